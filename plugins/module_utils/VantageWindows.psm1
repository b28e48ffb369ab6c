# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The few host operations the collection's Windows modules share. They apply and read back what
# the controller decided (plugins/module_utils/_windows_*.py); no policy lives here.

#AnsibleRequires -PowerShell Ansible.ModuleUtils.CommandUtil
#AnsibleRequires -PowerShell Ansible.ModuleUtils.ArgvParser

Function Get-VantageDacl {
    <#
    .SYNOPSIS
    The DACL of a file or directory as SDDL text, or $null when the path does not exist.
    #>
    param([Parameter(Mandatory = $true)][string]$Path)

    if (-not (Test-Path -LiteralPath $Path)) {
        return $null
    }
    $acl = Get-Acl -LiteralPath $Path
    return $acl.GetSecurityDescriptorSddlForm([System.Security.AccessControl.AccessControlSections]::Access)
}

Function Get-VantageAclShape {
    <#
    .SYNOPSIS
    A comparable text form of an access list: protection and the sorted access rules by SID.
    #>
    param([Parameter(Mandatory = $true)]$Security)

    $sidType = [System.Security.Principal.SecurityIdentifier]
    $rules = foreach ($rule in $Security.GetAccessRules($true, $true, $sidType)) {
        '{0}|{1}|{2}|{3}|{4}|{5}' -f @(
            $rule.IdentityReference.Value, [int]$rule.FileSystemRights, $rule.AccessControlType,
            [int]$rule.InheritanceFlags, [int]$rule.PropagationFlags, $rule.IsInherited
        )
    }
    return '{0};{1}' -f $Security.AreAccessRulesProtected, (($rules | Sort-Object) -join ',')
}

Function Set-VantageDacl {
    <#
    .SYNOPSIS
    Make the DACL of an existing file or directory exactly the given SDDL. Returns $true when it
    differed (and, unless -CheckMode, was replaced).
    #>
    param(
        [Parameter(Mandatory = $true)][string]$Path,
        [Parameter(Mandatory = $true)][string]$Sddl,
        [switch]$CheckMode
    )

    $item = Get-Item -LiteralPath $Path -Force
    if ($item.PSIsContainer) {
        $want = New-Object -TypeName System.Security.AccessControl.DirectorySecurity
    }
    else {
        $want = New-Object -TypeName System.Security.AccessControl.FileSecurity
    }
    $want.SetSecurityDescriptorSddlForm($Sddl, [System.Security.AccessControl.AccessControlSections]::Access)
    $current = Get-Acl -LiteralPath $Path
    if ((Get-VantageAclShape -Security $current) -eq (Get-VantageAclShape -Security $want)) {
        return $false
    }
    if (-not $CheckMode) {
        Set-Acl -LiteralPath $Path -AclObject $want
    }
    return $true
}

Function New-VantageDirectory {
    <#
    .SYNOPSIS
    Create a directory and any missing parents, each with the given DACL from the moment it
    exists. Returns the directories created (none in check mode).
    #>
    param(
        [Parameter(Mandatory = $true)][string]$Path,
        [Parameter(Mandatory = $true)][string]$Sddl,
        [switch]$CheckMode
    )

    $missing = New-Object -TypeName System.Collections.Generic.List[string]
    $current = [System.IO.Path]::GetFullPath($Path)
    while ($current -and -not (Test-Path -LiteralPath $current)) {
        $missing.Insert(0, $current)
        $current = [System.IO.Path]::GetDirectoryName($current)
    }
    if ($CheckMode) {
        return , $missing.ToArray()
    }
    $security = New-Object -TypeName System.Security.AccessControl.DirectorySecurity
    $security.SetSecurityDescriptorSddlForm($Sddl, [System.Security.AccessControl.AccessControlSections]::Access)
    foreach ($directory in $missing) {
        [void][System.IO.Directory]::CreateDirectory($directory, $security)
    }
    return , $missing.ToArray()
}

Function Get-VantageSha256 {
    <#
    .SYNOPSIS
    Lower-case hex SHA-256 of a file, or $null when it does not exist.
    #>
    param([Parameter(Mandatory = $true)][string]$Path)

    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
        return $null
    }
    return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

Function Invoke-VantageDocker {
    <#
    .SYNOPSIS
    Run docker.exe with the given arguments (each one quoted as needed); returns rc, stdout, stderr.
    #>
    param(
        [Parameter(Mandatory = $true)][string]$Docker,
        [Parameter(Mandatory = $true)][string[]]$Arguments
    )

    $command = Argv-ToString -arguments (@($Docker) + $Arguments)
    $result = Run-Command -command $command
    return @{
        rc = $result.rc
        stdout = $result.stdout
        stderr = $result.stderr
    }
}

Function Resolve-VantageDocker {
    <#
    .SYNOPSIS
    The docker.exe to use: the given path when set; else the first docker.exe on the machine PATH as
    the registry has it now (a PATH changed earlier in the same run is not in this process's
    environment yet), then on this process's PATH; else $null.
    #>
    param([string]$Docker)

    if ($Docker) {
        if (Test-Path -LiteralPath $Docker -PathType Leaf) {
            return $Docker
        }
        return $null
    }
    $machine = [Environment]::GetEnvironmentVariable('Path', [EnvironmentVariableTarget]::Machine)
    foreach ($directory in (($machine + ';' + $env:PATH) -split ';')) {
        if ([string]::IsNullOrWhiteSpace($directory)) {
            continue
        }
        $candidate = Join-Path -Path ([Environment]::ExpandEnvironmentVariables($directory.Trim())) -ChildPath 'docker.exe'
        if (Test-Path -LiteralPath $candidate -PathType Leaf) {
            return $candidate
        }
    }
    return $null
}

Export-ModuleMember -Function @(
    'Get-VantageDacl', 'Set-VantageDacl', 'New-VantageDirectory', 'Get-VantageSha256', 'Invoke-VantageDocker',
    'Resolve-VantageDocker'
)
