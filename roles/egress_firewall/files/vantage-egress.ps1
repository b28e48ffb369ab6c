# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Keeps a checkpoint's egress policy on the HNS endpoints of its containers (docs/windows.md, "Egress").
#
#   vantage-egress.ps1 -Policy <file> [-Verify]         apply to every endpoint of the network, probe the
#                                                       instances it applied to (all with -Verify), print a report
#   vantage-egress.ps1 -Policy <file> -Watch            the same at start, then again at every container start
#
# The policy file is rendered on the controller (plugins/module_utils/_windows_egress.py): the ACLs,
# the host names whose addresses are resolved here, and the probe. This script only resolves the
# names, compares and writes each endpoint's ACL policies through HNS, and runs the probe in each
# instance whose endpoint it changed. An instance whose probe shows a leak is stopped; an endpoint
# that cannot get its ACLs (a name that does not resolve) keeps the ones it has, and one that has
# none gets its container stopped: nothing runs unfiltered.

[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Policy,
    [string]$Docker = 'docker.exe',
    [switch]$Watch,
    [switch]$Verify
)

$ErrorActionPreference = 'Stop'
$document = Get-Content -LiteralPath $Policy -Raw | ConvertFrom-Json
$checkpoint = $document.checkpoint
$status = [System.IO.Path]::ChangeExtension($Policy, '.status.json')
$hns = Add-Type -PassThru -Namespace VantageEgress -Name Hns -MemberDefinition @'
[DllImport("vmcompute.dll")]
public static extern void HNSCall([MarshalAs(UnmanagedType.LPWStr)] string method, [MarshalAs(UnmanagedType.LPWStr)] string path,
    [MarshalAs(UnmanagedType.LPWStr)] string request, [MarshalAs(UnmanagedType.LPWStr)] out string response);
'@

Function Invoke-Hns {
    param([string]$Method, [string]$Path, [string]$Request = '')
    $response = ''
    $hns::HNSCall($Method, $Path, $Request, [ref]$response)
    $answer = $response | ConvertFrom-Json
    if ($answer.Error -or -not $answer.Success) {
        throw "HNS $Method $Path failed: $($answer.Error)"
    }
    return $answer.Output
}

Function Invoke-Docker {
    param([string[]]$Arguments)
    $ErrorActionPreference = 'Continue'
    $errors = [System.IO.Path]::GetTempFileName()
    try {
        $output = & $Docker @Arguments 2>$errors | Out-String
        return @{ rc = $LASTEXITCODE; stdout = $output; stderr = (Get-Content -LiteralPath $errors -Raw) }
    }
    finally {
        Remove-Item -LiteralPath $errors -Force
    }
}

Function Get-AclKey {
    param($Rules)
    $keys = foreach ($rule in @($Rules)) {
        if ($rule.Type -eq 'ACL') {
            '{0}|{1}|{2}|{3}|{4}|{5}' -f $rule.Action, $rule.Direction, $rule.Protocols, $rule.RemoteAddresses, $rule.RemotePorts, $rule.Priority
        }
    }
    return (@($keys) | Sort-Object) -join ';'
}

Function Copy-Rule {
    param($Rule, [string]$Addresses)
    $copy = $Rule.PSObject.Copy()
    $copy | Add-Member -NotePropertyName RemoteAddresses -NotePropertyValue $Addresses -Force
    return $copy
}

Function Resolve-Hosts {
    $resolved = @{}
    $failed = New-Object -TypeName System.Collections.Generic.List[string]
    foreach ($name in @($document.hosts | ForEach-Object { $_.host } | Sort-Object -Unique)) {
        try {
            $addresses = @([System.Net.Dns]::GetHostAddresses($name) | Where-Object { $_.AddressFamily -eq 'InterNetwork' } |
                ForEach-Object { $_.IPAddressToString } | Sort-Object -Unique)
            if ($addresses.Count -gt 0) {
                $resolved[$name] = $addresses -join ','
            }
            else {
                $failed.Add("$name has no IPv4 address")
            }
        }
        catch {
            $failed.Add("$name does not resolve: $($_.Exception.Message)")
        }
    }
    return @{ resolved = $resolved; failed = $failed.ToArray() }
}

Function Get-DesiredRules {
    param($Endpoint, $Resolved)
    $rules = New-Object -TypeName System.Collections.Generic.List[object]
    foreach ($rule in @($document.acls)) { $rules.Add($rule) }
    foreach ($item in @($document.hosts)) {
        if ($Resolved.ContainsKey($item.host)) { $rules.Add((Copy-Rule -Rule $item.acl -Addresses $Resolved[$item.host])) }
    }
    $servers = @("$($Endpoint.DNSServerList)" -split ',' | Where-Object { $_ -match '^[0-9.]+$' })
    if ($servers.Count -gt 0) {
        foreach ($rule in @($document.endpoint_dns)) { $rules.Add((Copy-Rule -Rule $rule -Addresses ($servers -join ','))) }
    }
    $rules.Add($document.block)
    return $rules.ToArray()
}

Function Invoke-Reconcile {
    param([switch]$ProbeAll)
    # read at every pass: a policy the role changed applies at the next container start or refresh
    $script:document = Get-Content -LiteralPath $Policy -Raw | ConvertFrom-Json
    $report = [ordered]@{ network = $document.network; time = (Get-Date).ToUniversalTime().ToString('o'); endpoints = @(); errors = @() }
    $inspect = Invoke-Docker -Arguments @('network', 'inspect', $document.network)
    if ($inspect.rc -ne 0) {
        $report.errors += "docker network inspect $($document.network) failed (exit $($inspect.rc)): $($inspect.stderr)"
        return $report
    }
    $network = @($inspect.stdout | ConvertFrom-Json)[0]
    $hnsId = $network.Options.'com.docker.network.windowsshim.hnsid'
    $containers = @{}
    foreach ($property in @($network.Containers.PSObject.Properties)) {
        $containers[("$($property.Value.IPv4Address)" -split '/')[0]] = @{ id = $property.Name; name = $property.Value.Name }
    }
    $names = Resolve-Hosts
    $report.errors += $names.failed
    foreach ($endpoint in @(Invoke-Hns -Method GET -Path '/endpoints/' | Where-Object { $_.VirtualNetwork -eq $hnsId })) {
        $container = $containers["$($endpoint.IPAddress)"]
        $item = [ordered]@{ id = $endpoint.ID; ip = "$($endpoint.IPAddress)"; container = $null; applied = $false; acls = 0; probe = $null; stopped = $false }
        if ($container) { $item.container = $container.name }
        $current = @($endpoint.Policies | Where-Object { $_.Type -eq 'ACL' })
        $desired = Get-DesiredRules -Endpoint $endpoint -Resolved $names.resolved
        try {
            if ($names.failed.Count -gt 0 -and $current.Count -gt 0) {
                $item.acls = $current.Count  # keep the addresses it has until the names resolve again
            }
            elseif ($names.failed.Count -gt 0) {
                throw 'the policy cannot be complete while host names do not resolve'
            }
            elseif ((Get-AclKey -Rules $current) -ne (Get-AclKey -Rules $desired)) {
                # the whole endpoint with its policies replaced, as hcsshim's HNSEndpoint.Update posts it
                $policies = @($endpoint.Policies | Where-Object { $_.Type -ne 'ACL' }) + $desired
                $endpoint | Add-Member -NotePropertyName Policies -NotePropertyValue $policies -Force
                $request = $endpoint | ConvertTo-Json -Depth 10 -Compress
                Invoke-Hns -Method POST -Path "/endpoints/$($endpoint.ID)" -Request $request | Out-Null
                $item.applied = $true
                $item.acls = $desired.Count
            }
            else {
                $item.acls = $current.Count
            }
        }
        catch {
            $report.errors += "endpoint $($endpoint.ID) ($($item.container)): $($_.Exception.Message)"
            if ($container -and $current.Count -eq 0) {
                Invoke-Docker -Arguments @('container', 'stop', $container.id) | Out-Null
                $item.stopped = $true
            }
        }
        if ($container -and -not $item.stopped -and ($item.applied -or $ProbeAll)) {
            $probe = @('container', 'exec', $container.id) + @($document.probe_argv)
            $item.probe = Invoke-Docker -Arguments $probe
            if ($item.probe.rc -eq 4) {
                Start-Sleep -Seconds 3  # the allowed destination did not answer: once more, the ACLs may be settling
                $item.probe = Invoke-Docker -Arguments $probe
            }
            if ($item.probe.rc -eq 3) {
                Invoke-Docker -Arguments @('container', 'stop', $container.id) | Out-Null
                $item.stopped = $true
            }
        }
        $report.endpoints += $item
    }
    return $report
}

Function Write-Report {
    param($Report)
    $text = $Report | ConvertTo-Json -Depth 10 -Compress
    Set-Content -LiteralPath $status -Value $text -Encoding UTF8
    return $text
}

if ($Watch) {
    while ($true) {
        try {
            Write-Report -Report (Invoke-Reconcile) | Out-Null
            & $Docker events --filter type=container --filter event=start --filter "label=io.vantage.checkpoint=$checkpoint" `
                --format '{{.ID}}' | ForEach-Object { Write-Report -Report (Invoke-Reconcile) | Out-Null }
        }
        catch {
            Write-Report -Report @{ errors = @($_.Exception.Message) } | Out-Null
        }
        Start-Sleep -Seconds 5  # the engine stopped or restarted: subscribe again
    }
}
$report = Invoke-Reconcile -ProbeAll:$Verify
Write-Output (Write-Report -Report $report)
if (@($report.endpoints | Where-Object { $_.stopped }).Count -gt 0) {
    exit 3
}
if (@($report.errors).Count -gt 0) {
    exit 1
}
exit 0
