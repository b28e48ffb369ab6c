#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Runs docker.exe once with the given arguments and reports its exit code and output. It decides
# nothing: the controller's engine backend (plugins/module_utils/_windows_docker.py) chooses every
# command, refuses those that would change the host in check mode, and reads the JSON printed.

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        argv = @{ type = 'list'; elements = 'str'; required = $true }
        docker = @{ type = 'str' }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$docker = Resolve-VantageDocker -Docker $module.Params.docker
if (-not $docker) {
    $module.FailJson("docker.exe was not found ($($module.Params.docker)): run the docker_host role first")
}
$answer = Invoke-VantageDocker -Docker $docker -Arguments $module.Params.argv
$module.Result.changed = $false
$module.Result.rc = $answer.rc
$module.Result.stdout = $answer.stdout
$module.Result.stderr = $answer.stderr
$module.ExitJson()
