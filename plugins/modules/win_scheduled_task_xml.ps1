#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Reads a scheduled task as Task Scheduler exports it and, when asked to, registers the task
# document the controller rendered (plugins/module_utils/_windows_tasks.py), removes the task,
# starts it, or restarts it (so that a long-running task runs a new version of its script). The controller compares the exported document with the one it wants and decides.

#AnsibleRequires -CSharpUtil Ansible.Basic

$spec = @{
    options = @{
        path = @{ type = 'str'; required = $true }
        name = @{ type = 'str'; required = $true }
        xml = @{ type = 'str' }
        register = @{ type = 'bool'; default = $false }
        remove = @{ type = 'bool'; default = $false }
        start = @{ type = 'bool'; default = $false }
        restart = @{ type = 'bool'; default = $false }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$path = $module.Params.path
$name = $module.Params.name
$module.Result.changed = $false

$task = Get-ScheduledTask -TaskPath $path -TaskName $name -ErrorAction SilentlyContinue
$module.Result.exported = if ($task) { Export-ScheduledTask -TaskPath $path -TaskName $name } else { $null }
$module.Result.state = if ($task) { "$($task.State)" } else { $null }

if ($module.Params.remove -and $task) {
    $module.Result.changed = $true
    if (-not $module.CheckMode) {
        Unregister-ScheduledTask -TaskPath $path -TaskName $name -Confirm:$false
    }
}
if ($module.Params.register) {
    if (-not $module.Params.xml) {
        $module.FailJson('register needs xml')
    }
    $module.Result.changed = $true
    if (-not $module.CheckMode) {
        Register-ScheduledTask -TaskPath $path -TaskName $name -Xml $module.Params.xml -User 'NT AUTHORITY\SYSTEM' -Force | Out-Null
    }
}
if ($module.Params.restart -and -not $module.CheckMode) {
    $task = Get-ScheduledTask -TaskPath $path -TaskName $name -ErrorAction SilentlyContinue
    if ($task -and "$($task.State)" -eq 'Running') {
        Stop-ScheduledTask -TaskPath $path -TaskName $name
        $module.Result.changed = $true
    }
}
if (($module.Params.start -or $module.Params.restart) -and -not $module.CheckMode) {
    $task = Get-ScheduledTask -TaskPath $path -TaskName $name -ErrorAction SilentlyContinue
    if ($task -and "$($task.State)" -ne 'Running') {
        Start-ScheduledTask -TaskPath $path -TaskName $name
        $module.Result.changed = $true
    }
}
$module.ExitJson()
