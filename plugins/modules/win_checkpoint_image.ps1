#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Makes the pinned checkpoint image present on a Windows host (pulled by digest when missing) and
# reports `docker image inspect`. The action plugin of the same name picks the image for the
# host's Windows build and refuses one that is not pinned or not built for it.

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        image = @{ type = 'str'; required = $true }
        docker = @{ type = 'str' }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$image = $module.Params.image
$docker = Resolve-VantageDocker -Docker $module.Params.docker
if (-not $docker) {
    $module.FailJson("docker.exe was not found ($($module.Params.docker)): run the docker_host role first")
}

$module.Result.changed = $false
$module.Result.pulled = $false
$inspect = Invoke-VantageDocker -Docker $docker -Arguments @('image', 'inspect', $image)
if ($inspect.rc -ne 0) {
    if ($image.StartsWith('sha256:')) {
        $module.FailJson("The image $image is not on this host and an image id cannot be pulled: load it (docker load) or pin a repository@sha256 reference")
    }
    $module.Result.changed = $true
    $module.Result.pulled = $true
    if ($module.CheckMode) {
        $module.Result.inspect = $null
        $module.ExitJson()
    }
    $pull = Invoke-VantageDocker -Docker $docker -Arguments @('pull', $image)
    if ($pull.rc -ne 0) {
        $module.FailJson("docker pull $image failed (exit $($pull.rc)): $($pull.stderr)")
    }
    $inspect = Invoke-VantageDocker -Docker $docker -Arguments @('image', 'inspect', $image)
    if ($inspect.rc -ne 0) {
        $module.FailJson("docker image inspect $image failed after the pull (exit $($inspect.rc)): $($inspect.stderr)")
    }
}
$module.Result.inspect = $inspect.stdout
$module.ExitJson()
