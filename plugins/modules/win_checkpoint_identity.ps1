#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Creates or reads an instance's Ed25519 identity key on a Windows host. .NET has no Ed25519, so
# the checkpoint image does it: `vantage identity PATH` in a container without network that mounts
# only the key's directory. A new key is written into a short-lived directory the container may
# write, moved into place and given its final DACL; then a second container run reads it through
# that DACL, read-only, which proves the agent can. The key never leaves the host; the action
# plugin of the same name checks the printed public key and the read-back DACLs.

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        path = @{ type = 'str'; required = $true }
        image = @{ type = 'str'; required = $true }
        docker = @{ type = 'str' }
        directory_sddl = @{ type = 'str'; required = $true }
        file_sddl = @{ type = 'str'; required = $true }
        keygen_sddl = @{ type = 'str'; required = $true }
        mount = @{ type = 'str'; default = 'C:\vantage\identity' }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$path = $module.Params.path
$directory = Split-Path -Path $path -Parent
$name = Split-Path -Path $path -Leaf
$mount = $module.Params.mount
$docker = Resolve-VantageDocker -Docker $module.Params.docker
if (-not $docker) {
    $module.FailJson("docker.exe was not found ($($module.Params.docker)): run the docker_host role first")
}

Function Invoke-KeyCommand {
    param([string]$Source, [switch]$ReadOnly)
    $bind = "type=bind,source=$Source,target=$mount"
    if ($ReadOnly) {
        $bind += ',readonly'
    }
    Invoke-VantageDocker -Docker $docker -Arguments @(
        'run', '--rm', '--network', 'none', '--isolation', 'process', '--user', 'ContainerUser',
        '--mount', $bind, $module.Params.image, 'identity', "$mount\$name"
    )
}

$module.Result.path = $path
$module.Result.directory = $directory
$module.Result.created = $false
$module.Result.keygen = $null
$module.Result.readback = $null
$created = New-VantageDirectory -Path $directory -Sddl $module.Params.directory_sddl -CheckMode:$module.CheckMode
$module.Result.changed = $created.Count -gt 0
if ((Test-Path -LiteralPath $directory) -and (Set-VantageDacl -Path $directory -Sddl $module.Params.directory_sddl -CheckMode:$module.CheckMode)) {
    $module.Result.changed = $true
}

if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
    $module.Result.changed = $true
    $module.Result.created = $true
    if ($module.CheckMode) {
        $module.Result.directory_sddl = Get-VantageDacl -Path $directory
        $module.ExitJson()
    }
    $stage = Join-Path -Path $directory -ChildPath ('.keygen-' + [System.IO.Path]::GetRandomFileName())
    try {
        New-VantageDirectory -Path $stage -Sddl $module.Params.keygen_sddl | Out-Null
        $module.Result.keygen = Invoke-KeyCommand -Source $stage
        if ($module.Result.keygen.rc -eq 0) {
            $new = Join-Path -Path $stage -ChildPath $name
            if (-not (Test-Path -LiteralPath $new -PathType Leaf)) {
                $module.FailJson("The key command succeeded but wrote no $name")
            }
            Set-VantageDacl -Path $new -Sddl $module.Params.file_sddl | Out-Null
            Move-Item -LiteralPath $new -Destination $path
        }
    }
    finally {
        if (Test-Path -LiteralPath $stage) {
            Remove-Item -LiteralPath $stage -Recurse -Force
        }
    }
    if ($module.Result.keygen.rc -ne 0) {
        $module.Result.directory_sddl = Get-VantageDacl -Path $directory
        $module.Result.file_sddl = $null
        $module.ExitJson()
    }
}

$fileAclChanged = Set-VantageDacl -Path $path -Sddl $module.Params.file_sddl -CheckMode:$module.CheckMode
$module.Result.directory_sddl = Get-VantageDacl -Path $directory
$module.Result.file_sddl = Get-VantageDacl -Path $path
if ($fileAclChanged) {
    $module.Result.changed = $true
}
# In check mode a DACL that would be corrected is still the old one: reading the key through it
# would prove nothing, so the read-back waits for the real run.
if (-not ($module.CheckMode -and $module.Result.changed)) {
    $module.Result.readback = Invoke-KeyCommand -Source $directory -ReadOnly
}
$module.ExitJson()
