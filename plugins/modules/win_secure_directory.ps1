#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Creates a directory (and missing parents) with exactly the DACL the controller chose, keeps that
# DACL, and reads it back. The action plugin of the same name picks the SDDL from a named policy
# and checks the read-back (plugins/module_utils/_windows_sddl.py).

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        path = @{ type = 'str'; required = $true }
        sddl = @{ type = 'str'; required = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$path = $module.Params.path
$sddl = $module.Params.sddl

if ((Test-Path -LiteralPath $path) -and -not (Test-Path -LiteralPath $path -PathType Container)) {
    $module.FailJson("$path exists and is not a directory")
}
$created = New-VantageDirectory -Path $path -Sddl $sddl -CheckMode:$module.CheckMode
$module.Result.created = @($created)
$module.Result.changed = $created.Count -gt 0
if (Test-Path -LiteralPath $path) {
    if (Set-VantageDacl -Path $path -Sddl $sddl -CheckMode:$module.CheckMode) {
        $module.Result.changed = $true
    }
}
$module.Result.sddl = Get-VantageDacl -Path $path
$module.ExitJson()
