#!powershell

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Installs Docker's static Windows engine from an archive already on the host, only when the
# archive has the pinned SHA-256, and registers the engine service. The action plugin of the same
# name gets the archive there (download or copy from the controller, both checked) and decides
# whether anything needs installing; this only verifies again and copies.

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -PowerShell Ansible.ModuleUtils.ArgvParser
#AnsibleRequires -PowerShell Ansible.ModuleUtils.CommandUtil
#AnsibleRequires -PowerShell ..module_utils.VantageWindows

$spec = @{
    options = @{
        archive = @{ type = 'str'; required = $true }
        sha256 = @{ type = 'str'; required = $true }
        version = @{ type = 'str'; required = $true }
        install_dir = @{ type = 'str'; required = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$archive = $module.Params.archive
$sha256 = $module.Params.sha256.ToLowerInvariant()
$installDir = $module.Params.install_dir
$dockerd = Join-Path -Path $installDir -ChildPath 'dockerd.exe'
$serviceCommand = '"{0}" --run-service' -f $dockerd
$module.Result.changed = $false

$actual = Get-VantageSha256 -Path $archive
if ($actual -ne $sha256) {
    $module.FailJson("The engine archive $archive has SHA-256 $actual, not the pinned $sha256. Nothing was installed.")
}

$stage = Join-Path -Path $module.Tmpdir -ChildPath 'engine'
Add-Type -AssemblyName System.IO.Compression.FileSystem
[System.IO.Compression.ZipFile]::ExtractToDirectory($archive, $stage)
$source = Join-Path -Path $stage -ChildPath 'docker'
foreach ($name in @('docker.exe', 'dockerd.exe')) {
    if (-not (Test-Path -LiteralPath (Join-Path -Path $source -ChildPath $name) -PathType Leaf)) {
        $module.FailJson("The engine archive $archive has no docker\$name: it is not Docker's static Windows engine. Nothing was installed.")
    }
}

$files = [ordered]@{}
foreach ($file in (Get-ChildItem -LiteralPath $source -File | Sort-Object -Property Name)) {
    $files[$file.Name] = Get-VantageSha256 -Path $file.FullName
}
$module.Result.files = $files

$changedFiles = @(
    foreach ($name in $files.Keys) {
        if ((Get-VantageSha256 -Path (Join-Path -Path $installDir -ChildPath $name)) -ne $files[$name]) { $name }
    }
)
$marker = Join-Path -Path $installDir -ChildPath 'vantage-engine.json'
$record = [ordered]@{ version = $module.Params.version; sha256 = $sha256; files = $files } | ConvertTo-Json -Compress
$recordChanged = -not (Test-Path -LiteralPath $marker -PathType Leaf) -or ([System.IO.File]::ReadAllText($marker) -ne $record)
$module.Result.changed_files = $changedFiles

$service = Get-CimInstance -ClassName Win32_Service -Filter "Name='docker'"
if ($service -and ((($service.PathName -split '\s+') -join ' ') -ne $serviceCommand)) {
    $module.FailJson(("A service named docker already runs {0}, not {1}. Set docker_host_windows_engine_source=preinstalled " +
            "to keep that engine, or remove its service first. Nothing was installed.") -f $service.PathName, $serviceCommand)
}

if ($changedFiles.Count -gt 0 -or $recordChanged) {
    $module.Result.changed = $true
    if (-not $module.CheckMode) {
        if ($changedFiles.Count -gt 0 -and $service -and $service.State -eq 'Running') {
            Stop-Service -Name docker
            $module.Result.stopped_service = $true
        }
        if (-not (Test-Path -LiteralPath $installDir)) {
            New-Item -Path $installDir -ItemType Directory | Out-Null
        }
        foreach ($name in $changedFiles) {
            Copy-Item -LiteralPath (Join-Path -Path $source -ChildPath $name) -Destination (Join-Path -Path $installDir -ChildPath $name) -Force
        }
        [System.IO.File]::WriteAllText($marker, $record)
    }
}

$module.Result.service_registered = $false
if (-not $service) {
    $module.Result.changed = $true
    $module.Result.service_registered = $true
    if (-not $module.CheckMode) {
        $registered = Run-Command -command (Argv-ToString -arguments @($dockerd, '--register-service'))
        if ($registered.rc -ne 0) {
            $module.FailJson("dockerd --register-service failed (exit $($registered.rc)): $($registered.stderr)")
        }
    }
}

$module.ExitJson()
