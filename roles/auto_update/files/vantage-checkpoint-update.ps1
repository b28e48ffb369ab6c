# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# vantage-checkpoint-update.ps1 -Config <config>\<checkpoint>\update.conf [-Check] [-ManifestFile F] [-RetryFailed]
#
# The Windows counterpart of /usr/local/sbin/vantage-checkpoint-update (docs/auto-update.md): runs
# `vantage update` from the checkpoint image the instances run now, so a new image is always verified
# by the old one. The run sees only the engine's named pipe, the checkpoint's configuration
# directory (read-only), its state directory, the host-wide lock's directory, SYSTEM's registry
# credentials (read-only) and a manifest given on the command line. It runs as ContainerAdministrator
# (the pipe and the configuration grant Administrators only), process-isolated. Nothing is decided
# here: update.conf says what to update, the engine decides how.

[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Config,
    [string]$ManifestFile,
    [switch]$Check,
    [switch]$RetryFailed,
    [string]$Docker = 'docker.exe'
)

$ErrorActionPreference = 'Stop'
if (-not (Test-Path -LiteralPath $Config -PathType Leaf)) {
    Write-Output "error: give -Config FILE, an update.conf written by the auto_update role (got '$Config')"
    exit 4
}
$settings = @{}
foreach ($line in Get-Content -LiteralPath $Config) {
    if ($line -match '^\s*([a-z_]+)\s*=\s*(.*?)\s*$') {
        $settings[$Matches[1]] = $Matches[2]
    }
}
$checkpoint = $settings['checkpoint']
$stateDir = $settings['state_dir']
$lockDir = Split-Path -Path $settings['lock_file'] -Parent
$configDir = Split-Path -Path $Config -Parent

$image = $null
foreach ($instance in ($settings['instances'] -split '\s+')) {
    $found = & $Docker container inspect --format '{{.Image}}' "vantage-$checkpoint-$instance" 2>$null
    if ($LASTEXITCODE -eq 0 -and "$found".Trim()) {
        $image = "$found".Trim()
        break
    }
}
if (-not $image) {
    Write-Output "error: no container of checkpoint $checkpoint runs on this host to take the update engine's image from; deploy the checkpoint with Ansible first"
    exit 4
}
New-Item -ItemType Directory -Force -Path $lockDir, $stateDir | Out-Null

$arguments = @(
    'run', '--rm', '--label', "io.vantage.update=$checkpoint", '--isolation', 'process', '--user', 'ContainerAdministrator',
    '--no-healthcheck', '--log-driver', 'none',
    '--mount', 'type=npipe,source=\\.\pipe\docker_engine,target=\\.\pipe\docker_engine',
    '--mount', "type=bind,source=$configDir,target=$configDir,readonly",
    '--mount', "type=bind,source=$stateDir,target=$stateDir",
    '--mount', "type=bind,source=$lockDir,target=$lockDir"
)
$caFile = $settings['ca_file']
if ($caFile -and (Split-Path -Path $caFile -Parent) -ne $configDir) {
    $caDir = Split-Path -Path $caFile -Parent
    $arguments += @('--mount', "type=bind,source=$caDir,target=$caDir,readonly")
}
if ($ManifestFile) {
    $manifestDir = Split-Path -Path $ManifestFile -Parent
    $arguments += @('--mount', "type=bind,source=$manifestDir,target=$manifestDir,readonly")
}
$dockerConfig = Join-Path -Path $env:USERPROFILE -ChildPath '.docker'
if (Test-Path -LiteralPath (Join-Path -Path $dockerConfig -ChildPath 'config.json') -PathType Leaf) {
    $arguments += @('--mount', "type=bind,source=$dockerConfig,target=C:\vantage\docker,readonly", '--env', 'DOCKER_CONFIG=C:\vantage\docker')
}
$arguments += @($image, 'update', '--config', $Config)
if ($Check) {
    $arguments += '--check'
}
if ($RetryFailed) {
    $arguments += '--retry-failed'
}
if ($ManifestFile) {
    $arguments += @('--manifest-file', $ManifestFile)
}
& $Docker @arguments
exit $LASTEXITCODE
