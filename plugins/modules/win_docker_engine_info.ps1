#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Read-only report of a Windows host's container engine. It decides nothing: the controller
# judges the report (plugins/module_utils/_windows_engine.py, _windows_host.py).

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        install_dir = @{ type = 'str' }
        docker = @{ type = 'str' }
        pipe_group = @{ type = 'str' }
        query_engine = @{ type = 'bool'; default = $true }
        wait = @{ type = 'int'; default = 0 }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$installDir = $module.Params.install_dir
$pipePath = '\\.\pipe\docker_engine'

# First the engine itself: a freshly started engine needs a moment before it answers on its pipe,
# so ask again until it does or the wait is over. Everything below describes the same moment.
$module.Result.docker_version = $null
$module.Result.docker_info = $null
$docker = Resolve-VantageDocker -Docker $module.Params.docker
$module.Result.docker = $docker
if ($module.Params.query_engine -and $docker) {
    $deadline = (Get-Date).AddSeconds($module.Params.wait)
    do {
        $version = Invoke-VantageDocker -Docker $docker -Arguments @('version', '--format', '{{json .}}')
        if ($version.rc -eq 0 -or (Get-Date) -ge $deadline) {
            break
        }
        Start-Sleep -Seconds 2
    } while ($true)
    $module.Result.docker_version = $version.stdout
    $module.Result.docker_version_stderr = $version.stderr
    $info = Invoke-VantageDocker -Docker $docker -Arguments @('info', '--format', '{{json .}}')
    $module.Result.docker_info = $info.stdout
    $module.Result.docker_info_stderr = $info.stderr
}

$feature = Get-WindowsOptionalFeature -Online -FeatureName Containers -ErrorAction SilentlyContinue
$module.Result.containers_feature = if ($feature) { [string]$feature.State } else { $null }

$service = Get-CimInstance -ClassName Win32_Service -Filter "Name='docker'"
if ($service) {
    $startMode = ([string]$service.StartMode).ToLowerInvariant()
    if ($startMode -eq 'auto' -and $service.DelayedAutoStart) {
        $startMode = 'delayed'
    }
    $module.Result.service = @{
        exists = $true
        state = ([string]$service.State).ToLowerInvariant()
        start_mode = $startMode
        path = [string]$service.PathName
        pid = [int]$service.ProcessId
    }
}
else {
    $module.Result.service = @{ exists = $false }
}

# TCP sockets the engine process listens on; $null when they cannot be listed, so that the
# controller refuses to call the engine safe.
$module.Result.tcp_listeners = $null
if ($service -and $service.ProcessId -eq 0) {
    $module.Result.tcp_listeners = @()
}
elseif ($service -and (Get-Command -Name Get-NetTCPConnection -ErrorAction SilentlyContinue)) {
    $module.Result.tcp_listeners = @(
        Get-NetTCPConnection -State Listen -OwningProcess $service.ProcessId -ErrorAction SilentlyContinue |
            ForEach-Object { @{ address = [string]$_.LocalAddress; port = [int]$_.LocalPort } }
    )
}

$pipe = @{ exists = ([System.IO.Directory]::GetFiles('\\.\pipe\') -contains $pipePath); sddl = $null; error = $null }
if ($pipe.exists) {
    try {
        $pipeInfo = New-Object -TypeName System.IO.DirectoryInfo -ArgumentList $pipePath
        $pipe.sddl = $pipeInfo.GetAccessControl('Access').GetSecurityDescriptorSddlForm('Access')
    }
    catch {
        $pipe.error = $_.Exception.Message
    }
}
$module.Result.pipe = $pipe

$module.Result.pipe_group_sid = $null
if ($module.Params.pipe_group) {
    try {
        $account = New-Object -TypeName System.Security.Principal.NTAccount -ArgumentList $module.Params.pipe_group
        $module.Result.pipe_group_sid = $account.Translate([System.Security.Principal.SecurityIdentifier]).Value
    }
    catch {
        $module.Result.pipe_group_error = $_.Exception.Message
    }
}

$module.Result.engine_files = @()
$module.Result.marker_json = $null
if ($installDir) {
    $module.Result.engine_files = @(
        foreach ($name in @('docker.exe', 'dockerd.exe')) {
            @{ name = $name; sha256 = (Get-VantageSha256 -Path (Join-Path -Path $installDir -ChildPath $name)) }
        }
    )
    $marker = Join-Path -Path $installDir -ChildPath 'vantage-engine.json'
    if (Test-Path -LiteralPath $marker -PathType Leaf) {
        $module.Result.marker_json = [System.IO.File]::ReadAllText($marker)
    }
}

$daemonJson = Join-Path -Path $env:ProgramData -ChildPath 'docker\config\daemon.json'
$module.Result.daemon_json_path = $daemonJson
$module.Result.daemon_json = $null
if (Test-Path -LiteralPath $daemonJson -PathType Leaf) {
    $module.Result.daemon_json = [System.IO.File]::ReadAllText($daemonJson)
}

$module.ExitJson()
