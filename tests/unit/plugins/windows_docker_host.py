# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A simulated ``docker.exe`` of a Windows Server 2022 host, for the controller-side Windows tests.

No Windows host runs here. :class:`FakeDockerExe` answers the command lines ``_windows_docker``
sends with the JSON and the messages ``docker.exe`` prints (fixtures/windows/README.md says what
each answer is shaped after): inspect objects are built from the recorded
``docker-container-inspect-ltsc2022.json`` / ``docker-network-inspect-nat.json`` /
``docker-image-inspect-ltsc2022.json`` with the values the command line gave, the way the engine
stores them (the image's HEALTHCHECK command and timings fill in what ``--health-*`` leaves out;
HostConfig.Mounts is kept as given; ``Isolation`` defaults to the daemon's ``process``). What the
simulation decides itself - which images come up healthy, what an egress probe prints - is set by
each test.
"""

from __future__ import annotations

import copy
import json

from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers

NANO = 1000000000


def _seconds(text):
    return int(float(text.rstrip("s")) * NANO)


def _size(text):
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


class FakeDockerExe:
    """``fake(argv) -> {"rc", "stdout", "stderr"}`` for ``docker.exe argv...``; ``calls`` records every argv."""

    def __init__(self, build=20348):
        self.build = build
        self.calls = []
        self.images = {}
        self.containers = {}
        self.networks = {}
        self.healthy = set()
        self.counter = 0
        #: container name -> (rc, stdout) answered to ``docker exec`` (the egress probe)
        self.exec_answers = {}
        self.pullable = {}

    # -- setting the scene ------------------------------------------------------------------------

    def add_image(self, digest, os_version="10.0.20348.3091", healthy=True, image_id=None):
        image = answers.image_inspect(os_version)
        image["Id"] = image_id or "sha256:" + digest[7:][::-1]
        image["RepoDigests"] = ["registry.example.com/vantage/checkpoint@" + digest]
        self.images[image["Id"]] = image
        if healthy:
            self.healthy.add(image["Id"])
        return image["Id"]

    def add_network(self, name, driver="nat", checkpoint="plant", hns_name="vtg-0a1b2c3d4e5"):
        network = answers.load("docker-network-inspect-nat.json")[0]
        network.update(Name=name, Driver=driver, Id="%064x" % (len(self.networks) + 0x7c7c),
                       Labels={"io.vantage.checkpoint": checkpoint} if checkpoint else {})
        network["Options"]["com.docker.network.windowsshim.networkname"] = hns_name
        self.networks[network["Id"]] = network
        return network

    # -- docker.exe ---------------------------------------------------------------------------------

    def __call__(self, argv):
        self.calls.append(list(argv))
        handler = getattr(self, "do_" + "_".join(argv[:2]).replace("-", "_"), None)
        if handler is None:
            return self.fail("unknown command: docker %s" % " ".join(argv[:2]))
        return handler(argv[2:])

    @staticmethod
    def ok(stdout=""):
        return {"rc": 0, "stdout": stdout, "stderr": ""}

    @staticmethod
    def fail(stderr, rc=1):
        return {"rc": rc, "stdout": "", "stderr": stderr}

    def mutations(self):
        """The commands that changed something, as ``docker <verb> <noun>`` words."""
        reading = {("image", "inspect"), ("image", "ls"), ("container", "ls"), ("container", "inspect"), ("network", "ls"),
                   ("network", "inspect"), ("container", "logs"), ("container", "exec")}
        return [" ".join(call[:2]) for call in self.calls if tuple(call[:2]) not in reading]

    def _image(self, reference):
        if reference in self.images:
            return self.images[reference]
        for image in self.images.values():
            if reference in image["RepoDigests"]:
                return image
        return None

    def _container(self, name_or_id):
        for container in self.containers.values():
            if name_or_id in (container["Id"], container["Name"][1:]) or (len(name_or_id) >= 12 and container["Id"].startswith(name_or_id)):
                return container
        return None

    def _network(self, name_or_id):
        for network in self.networks.values():
            if name_or_id in (network["Id"], network["Name"]):
                return network
        return None

    def do_image_inspect(self, args):
        found = [self._image(ref) for ref in args]
        if None in found:
            return {"rc": 1, "stdout": "[]\n", "stderr": "Error: No such image: %s" % args[found.index(None)]}
        return self.ok(json.dumps(found, indent=4) + "\n")

    def do_image_ls(self, args):
        return self.ok("".join(i + "\n" for i in sorted(self.images)))

    def do_image_rm(self, args):
        self.images.pop(args[0], None)
        return self.ok("Deleted: %s\n" % args[0])

    def do_image_pull(self, args):
        reference = args[0]
        if reference not in self.pullable:
            return self.fail("Error response from daemon: manifest for %s not found: manifest unknown" % reference)
        self.add_image(reference.split("@", 1)[1], **self.pullable[reference])
        return self.ok("Status: Downloaded newer image for %s\n" % reference)

    def do_container_ls(self, args):
        wanted = None
        if "--filter" in args:
            wanted = args[args.index("--filter") + 1].split("=", 1)[1]
        found = []
        for container in self.containers.values():
            labels = container["Config"]["Labels"]
            if wanted is None or "%s=%s" % ("io.vantage.checkpoint", labels.get("io.vantage.checkpoint")) == wanted:
                found.append(container["Id"])
        return self.ok("".join(i + "\n" for i in found))

    def do_container_inspect(self, args):
        found = [self._container(ref) for ref in args]
        if None in found:
            return {"rc": 1, "stdout": "[]\n", "stderr": "Error: No such container: %s" % args[found.index(None)]}
        return self.ok(json.dumps(found, indent=4) + "\n")

    def do_network_ls(self, args):
        name = args[args.index("--filter") + 1].split("=", 1)[1]
        lines = []
        for network in self.networks.values():
            if name in network["Name"]:  # the name filter matches a part of the name
                lines.append(json.dumps({"CreatedAt": "2025-02-03 08:15:40.1187741 +0000 UTC", "Driver": network["Driver"],
                                         "ID": network["Id"], "IPv6": "false", "Internal": "false", "Labels": "",
                                         "Name": network["Name"], "Scope": "local"}))
        return self.ok("".join(line + "\n" for line in lines))

    def do_network_inspect(self, args):
        network = self._network(args[0])
        if network is None:
            return {"rc": 1, "stdout": "[]\n", "stderr": "Error response from daemon: network %s not found" % args[0]}
        return self.ok(json.dumps([network], indent=4) + "\n")

    def do_network_create(self, args):
        name = args[-1]
        driver = args[args.index("--driver") + 1]
        label = args[args.index("--label") + 1].split("=", 1)[1]
        hns = args[args.index("--opt") + 1].split("=", 1)[1]
        network = self.add_network(name, driver=driver, checkpoint=label, hns_name=hns)
        return self.ok(network["Id"] + "\n")

    def do_network_rm(self, args):
        network = self._network(args[0])
        del self.networks[network["Id"]]
        return self.ok(args[0] + "\n")

    def do_container_create(self, args):
        options = {"--env": [], "--label": [], "--mount": [], "--log-opt": [], "--add-host": []}
        image = args[-1]
        index = 0
        while index < len(args) - 1:
            flag, value = args[index], args[index + 1]
            if flag in options and isinstance(options[flag], list):
                options[flag].append(value)
            else:
                options[flag] = value
            index += 2
        name = options["--name"]
        if self._container(name) is not None:
            return self.fail('Error response from daemon: Conflict. The container name "/%s" is already in use' % name, 125)
        image_info = self._image(image)
        if image_info is None:
            return self.fail("Unable to find image '%s' locally" % image, 125)
        self.counter += 1
        container = answers.load("docker-container-inspect-ltsc2022.json")[0]
        container_id = "%064x" % (0xc0de0000 + self.counter)
        image_config = image_info["Config"]
        env = list(image_config.get("Env") or [])
        for item in options["--env"]:
            env = [e for e in env if e.split("=", 1)[0] != item.split("=", 1)[0]] + [item]
        health = dict(image_config.get("Healthcheck") or {})
        if "--health-cmd" in options:
            health["Test"] = ["CMD-SHELL", options["--health-cmd"]]
        for flag, key in (("--health-interval", "Interval"), ("--health-timeout", "Timeout"),
                          ("--health-start-period", "StartPeriod")):
            if flag in options:
                health[key] = _seconds(options[flag])
        if "--health-retries" in options:
            health["Retries"] = int(options["--health-retries"])
        mounts = []
        for text in options["--mount"]:
            fields = dict(part.split("=", 1) if "=" in part else (part, "true") for part in text.split(","))
            mount = {"Type": fields["type"], "Source": fields["source"], "Target": fields["target"]}
            if fields.get("readonly") == "true":
                mount["ReadOnly"] = True
            mounts.append(mount)
        restart = options.get("--restart", "no")
        container.update(Id=container_id, Name="/" + name, Image=image_info["Id"], RestartCount=0,
                         State={"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                                "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                                "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"})
        container["Config"].update(User=options.get("--user", image_config.get("User", "")), Env=env, Healthcheck=health,
                                   Image=image, Labels=dict(item.split("=", 1) for item in options["--label"]),
                                   StopTimeout=int(options["--stop-timeout"]) if "--stop-timeout" in options else None)
        host = container["HostConfig"]
        host.update(
            Isolation=options.get("--isolation", "process"),
            NetworkMode=options.get("--network", "nat"),
            Memory=_size(options["--memory"]) if "--memory" in options else 0,
            NanoCpus=int(round(float(options["--cpus"]) * NANO)) if "--cpus" in options else 0,
            RestartPolicy={"Name": restart, "MaximumRetryCount": 0},
            LogConfig={"Type": options.get("--log-driver", "json-file"),
                       "Config": dict(item.split("=", 1) for item in options["--log-opt"])},
            Mounts=mounts,
            ExtraHosts=options["--add-host"] or None,
        )
        container["Mounts"] = [{"Type": m["Type"], "Source": m["Source"], "Destination": m["Target"].lower(), "Mode": "",
                                "RW": not m.get("ReadOnly", False), "Propagation": ""} for m in mounts]
        network = self._network(host["NetworkMode"])
        container["NetworkSettings"]["Networks"] = {}
        if network is not None:
            address = "172.27.137.%d" % (40 + self.counter)
            container["NetworkSettings"]["Networks"][network["Name"]] = dict(
                answers.load("docker-container-inspect-ltsc2022.json")[0]["NetworkSettings"]["Networks"]["vantage-plant"],
                NetworkID=network["Id"], IPAddress=address)
        self.containers[container_id] = container
        return self.ok(container_id + "\n")

    def do_container_start(self, args):
        container = self._container(args[0])
        if container is None:
            return self.fail("Error response from daemon: No such container: %s" % args[0])
        healthy = container["Image"] in self.healthy
        container["State"].update(Status="running", Running=True, Pid=4000 + self.counter,
                                  Health={"Status": "healthy" if healthy else "unhealthy", "FailingStreak": 0 if healthy else 3,
                                          "Log": [{"ExitCode": 0 if healthy else 1,
                                                   "Output": "healthy: connected" if healthy else "unhealthy: not connected"}]})
        return self.ok(args[0] + "\n")

    def do_container_stop(self, args):
        container = self._container(args[-1])
        container["State"].update(Status="exited", Running=False, ExitCode=1067, Pid=0)
        container["State"].pop("Health", None)
        return self.ok(args[-1] + "\n")

    def do_container_rename(self, args):
        container = self._container(args[0])
        if self._container(args[1]) is not None:
            return self.fail('Error response from daemon: Conflict. The container name "/%s" is already in use' % args[1])
        container["Name"] = "/" + args[1]
        return self.ok()

    def do_container_rm(self, args):
        container = self._container(args[-1])
        if container is None:
            return self.fail("Error response from daemon: No such container: %s" % args[-1])
        del self.containers[container["Id"]]
        return self.ok(args[-1] + "\n")

    def do_container_logs(self, args):
        return self.ok("agent: connecting to the control plane\n")

    def do_container_exec(self, args):
        container = self._container(args[0])
        if container is None or not container["State"]["Running"]:
            return self.fail("Error response from daemon: container %s is not running" % args[0])
        rc, stdout = self.exec_answers.get(container["Name"][1:], (0, "{}"))
        return {"rc": rc, "stdout": stdout, "stderr": ""}

    def copy(self):
        return copy.deepcopy(self)


class ModuleHost:
    """Stands in for ``ActionBase._execute_module`` on the Windows host: every module the plugin runs is
    checked against its PowerShell ``$spec`` and answered by ``handlers[module name](module_args)``;
    ``win_docker_exec`` goes to the simulated ``docker.exe``."""

    def __init__(self, docker, **handlers):
        self.docker = docker
        self.handlers = dict(handlers)
        self.handlers.setdefault("win_docker_exec", lambda args: dict(docker(args["argv"]), changed=False))
        self.calls = []

    def __call__(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        short = module_name.rsplit(".", 1)[1]
        self.calls.append((short, module_args))
        if module_name.startswith("vantage.checkpoint."):
            options = answers.ps1_options(short)
            assert set(module_args) <= set(options), (short, sorted(set(module_args) - set(options)))
            assert {name for name, required in options.items() if required} <= set(module_args), short
        return self.handlers[short](module_args)

    def modules(self):
        return [name for name, _args in self.calls if name != "win_docker_exec"]
