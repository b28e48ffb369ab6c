#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Writes the directories and files a checkpoint keeps on a Windows host, each with the access list
# the controller chose, removes the files it no longer needs, fingerprints each instance's
# credentials file with its identity key, and reads every access list back. The action plugin of
# the same name decided all of it (plugins/module_utils/_windows_checkpoint.py) and checks the
# read-back; the file contents never appear in the result.

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        directories = @{ type = 'list'; elements = 'dict'; required = $true }
        files = @{ type = 'list'; elements = 'dict'; required = $true; no_log = $true }
        remove = @{ type = 'list'; elements = 'str'; required = $true }
        revisions = @{ type = 'list'; elements = 'dict'; required = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$check = $module.CheckMode
$module.Result.changed = $false
$pending = New-Object -TypeName System.Collections.Generic.List[string]
$sddl = @{}

foreach ($directory in $module.Params.directories) {
    if ((Test-Path -LiteralPath $directory.path) -and -not (Test-Path -LiteralPath $directory.path -PathType Container)) {
        $module.FailJson("$($directory.path) exists and is not a directory")
    }
    $created = New-VantageDirectory -Path $directory.path -Sddl $directory.sddl -CheckMode:$check
    $changed = $created.Count -gt 0
    if ((Test-Path -LiteralPath $directory.path) -and (Set-VantageDacl -Path $directory.path -Sddl $directory.sddl -CheckMode:$check)) {
        $changed = $true
    }
    if ($changed) {
        $module.Result.changed = $true
        $pending.Add($directory.path)
    }
}

foreach ($file in $module.Params.files) {
    $bytes = [Convert]::FromBase64String($file.content)
    $same = (Test-Path -LiteralPath $file.path -PathType Leaf) -and
        ([Convert]::ToBase64String([System.IO.File]::ReadAllBytes($file.path)) -eq $file.content)
    if (-not $same) {
        $module.Result.changed = $true
        $pending.Add($file.path)
        if (-not $check) {
            # written beside the target with its final access list, then moved over it
            $temporary = Join-Path -Path (Split-Path -Path $file.path -Parent) -ChildPath ('.vantage-' + [System.IO.Path]::GetRandomFileName())
            [System.IO.File]::WriteAllBytes($temporary, $bytes)
            Set-VantageDacl -Path $temporary -Sddl $file.sddl | Out-Null
            Move-Item -LiteralPath $temporary -Destination $file.path -Force
        }
    }
    if ((Test-Path -LiteralPath $file.path -PathType Leaf) -and (Set-VantageDacl -Path $file.path -Sddl $file.sddl -CheckMode:$check)) {
        $module.Result.changed = $true
        $pending.Add($file.path)
    }
}

foreach ($path in $module.Params.remove) {
    if (Test-Path -LiteralPath $path -PathType Leaf) {
        $module.Result.changed = $true
        $pending.Add($path)
        if (-not $check) {
            Remove-Item -LiteralPath $path -Force
        }
    }
}

foreach ($item in @($module.Params.directories) + @($module.Params.files)) {
    $sddl[$item.path] = Get-VantageDacl -Path $item.path
}
foreach ($path in $module.Params.remove) {
    $sddl[$path] = Get-VantageDacl -Path $path
}

# HMAC-SHA256 of the credentials file keyed with the identity key: what the Linux path computes
# (_container.credentials_revision), so new secrets replace the instances.
$revisions = @{}
foreach ($revision in $module.Params.revisions) {
    if ((Test-Path -LiteralPath $revision.key -PathType Leaf) -and (Test-Path -LiteralPath $revision.file -PathType Leaf)) {
        $hmac = New-Object -TypeName System.Security.Cryptography.HMACSHA256 -ArgumentList (, [System.IO.File]::ReadAllBytes($revision.key))
        try {
            $hash = $hmac.ComputeHash([System.IO.File]::ReadAllBytes($revision.file))
        }
        finally {
            $hmac.Dispose()
        }
        $revisions[$revision.name] = (-join ($hash | ForEach-Object { $_.ToString('x2') })).Substring(0, 32)
    }
}

$module.Result.pending = $pending.ToArray()
$module.Result.sddl = $sddl
$module.Result.revisions = $revisions
$module.ExitJson()
