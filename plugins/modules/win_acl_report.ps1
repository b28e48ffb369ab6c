#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Reads, and only reads, the access lists of the given paths and the host's clock. The controller
# judges both (plugins/module_utils/_windows_sddl.py; the clock offset in win_checkpoint_health).

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        paths = @{ type = 'list'; elements = 'str'; required = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$sddl = @{}
foreach ($path in $module.Params.paths) {
    $sddl[$path] = Get-VantageDacl -Path $path
}
$module.Result.changed = $false
$module.Result.sddl = $sddl
$module.Result.now_ms = [DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds()
$module.ExitJson()
