# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Windows access control lists as SDDL text: the policies the roles apply and the checks of what the host reports.

PowerShell on the host only sets a DACL given as SDDL and reads one back
(``plugins/module_utils/VantageAcl.psm1``); which entries a file may have is decided and checked here.
Rights are compared as access masks after mapping generic rights the way Windows does for files,
directories and named pipes (``GA`` is stored as ``FA``, ``GR`` as ``FR``...), so a read-back
descriptor is judged by what it grants, not by how it is spelled.
"""

from __future__ import annotations

import re

# Well-known SIDs and their SDDL aliases (the ones a file or pipe DACL on a server can carry).
SID_ALIASES = {
    "SY": "S-1-5-18",          # LocalSystem
    "BA": "S-1-5-32-544",      # BUILTIN\Administrators
    "BU": "S-1-5-32-545",      # BUILTIN\Users
    "BG": "S-1-5-32-546",      # BUILTIN\Guests
    "WD": "S-1-1-0",           # Everyone
    "AU": "S-1-5-11",          # Authenticated Users
    "IU": "S-1-5-4",           # Interactive
    "NU": "S-1-5-2",           # Network
    "AN": "S-1-5-7",           # Anonymous
    "CO": "S-1-3-0",           # Creator Owner
    "CG": "S-1-3-1",           # Creator Group
    "OW": "S-1-3-4",           # Owner Rights
    "LS": "S-1-5-19",          # LocalService
    "NS": "S-1-5-20",          # NetworkService
    "SU": "S-1-5-6",           # Service
    "PU": "S-1-5-32-547",      # Power Users
    "AC": "S-1-15-2-1",        # All application packages
}
SYSTEM = SID_ALIASES["SY"]
ADMINISTRATORS = SID_ALIASES["BA"]
#: ``User Manager\ContainerUser``: the identity of a process-isolated container's ContainerUser as the
#: host's file system sees it (the same SID in every container; see docs/windows.md, "Key files").
CONTAINER_USER = "S-1-5-93-2-2"
#: ``User Manager\ContainerAdministrator``, for completeness in messages.
CONTAINER_ADMINISTRATOR = "S-1-5-93-2-1"
SID_NAMES = {
    SYSTEM: "SYSTEM",
    ADMINISTRATORS: "Administrators",
    SID_ALIASES["BU"]: "Users",
    SID_ALIASES["WD"]: "Everyone",
    SID_ALIASES["AU"]: "Authenticated Users",
    SID_ALIASES["IU"]: "Interactive",
    SID_ALIASES["AN"]: "Anonymous",
    SID_ALIASES["CO"]: "Creator Owner",
    CONTAINER_USER: "ContainerUser",
    CONTAINER_ADMINISTRATOR: "ContainerAdministrator",
}

# Access masks (winnt.h) and the SDDL right names used on files, directories and pipes.
FILE_ALL_ACCESS = 0x001F01FF
FILE_GENERIC_READ = 0x00120089
FILE_GENERIC_WRITE = 0x00120116
FILE_GENERIC_EXECUTE = 0x001200A0
FILE_MODIFY = 0x001301BF
READ_AND_EXECUTE = FILE_GENERIC_READ | FILE_GENERIC_EXECUTE
_GENERIC = {  # generic right -> file object specific rights (the mapping Windows applies when storing)
    0x10000000: FILE_ALL_ACCESS,      # GA
    0x80000000: FILE_GENERIC_READ,    # GR
    0x40000000: FILE_GENERIC_WRITE,   # GW
    0x20000000: FILE_GENERIC_EXECUTE,  # GX
}
RIGHTS = {
    "GA": 0x10000000, "GR": 0x80000000, "GW": 0x40000000, "GX": 0x20000000,
    "FA": FILE_ALL_ACCESS, "FR": FILE_GENERIC_READ, "FW": FILE_GENERIC_WRITE, "FX": FILE_GENERIC_EXECUTE,
    "RC": 0x00020000, "SD": 0x00010000, "WD": 0x00040000, "WO": 0x00080000,
    "RP": 0x00000010, "WP": 0x00000020, "CC": 0x00000001, "DC": 0x00000002, "LC": 0x00000004,
    "SW": 0x00000008, "LO": 0x00000080, "DT": 0x00000040, "CR": 0x00000100,
}
ACE_FLAGS = ("OI", "CI", "NP", "IO", "ID", "SA", "FA")
_ACE = re.compile(r"\(([^()]*)\)")
_DACL = re.compile(r"D:([A-Z]*)((?:\([^()]*\))*)")
_SID = re.compile(r"S-1-[0-9]+(-[0-9]+)+")


class SddlError(ValueError):
    """SDDL text that cannot be read."""


def sid_name(sid):
    """A readable name of a SID for messages (the SID itself when it is not well known)."""
    return "%s (%s)" % (SID_NAMES[sid], sid) if sid in SID_NAMES else sid


def _sid(text):
    text = text.strip()
    if text in SID_ALIASES:
        return SID_ALIASES[text]
    if _SID.fullmatch(text):
        return text
    raise SddlError("unknown trustee %r" % text)


def _mask(text):
    text = text.strip()
    if text.lower().startswith("0x"):
        try:
            value = int(text, 16)
        except ValueError:
            raise SddlError("bad access mask %r" % text)
    else:
        value = 0
        if len(text) % 2:
            raise SddlError("bad rights %r" % text)
        for i in range(0, len(text), 2):
            right = text[i:i + 2]
            if right not in RIGHTS:
                raise SddlError("unknown right %r in %r" % (right, text))
            value |= RIGHTS[right]
    for generic, specific in _GENERIC.items():
        if value & generic:
            value = (value & ~generic) | specific
    return value


def _flags(text):
    flags = [text[i:i + 2] for i in range(0, len(text), 2)]
    if len(text) % 2 or any(flag not in ACE_FLAGS for flag in flags):
        raise SddlError("bad ACE flags %r" % text)
    return tuple(flags)


def parse_dacl(sddl):
    """``{"protected": bool, "aces": [{"type", "flags", "mask", "sid"}]}`` from SDDL text.

    Accepts a full descriptor (``O:BAG:SYD:PAI(...)...``) or its ``D:`` part; ``type`` is ``allow``
    or ``deny`` (object and callback ACEs are refused: a file ACL written by the roles has none).
    """
    if not isinstance(sddl, str):
        raise SddlError("no SDDL text")
    match = _DACL.search(sddl)
    if not match:
        raise SddlError("no DACL in %r" % sddl)
    control, body = match.group(1), match.group(2)
    aces = []
    for ace in _ACE.findall(body):
        fields = ace.split(";")
        if len(fields) != 6:
            raise SddlError("bad ACE (%s)" % ace)
        kind, flags, rights, object_guid, inherit_guid, trustee = fields
        if kind not in ("A", "D") or object_guid or inherit_guid:
            raise SddlError("unexpected ACE type in (%s)" % ace)
        aces.append({
            "type": "allow" if kind == "A" else "deny",
            "flags": _flags(flags),
            "mask": _mask(rights),
            "sid": _sid(trustee),
        })
    return {"protected": "P" in control, "aces": aces}


def dacl_sddl(entries, protected=True):
    """SDDL for a DACL: ``entries`` are ``(sid, mask, inherit)`` with ``inherit`` one of ``""``, ``"OICI"``."""
    parts = []
    for sid, mask, inherit in entries:
        alias = dict((v, k) for k, v in SID_ALIASES.items()).get(sid, sid)
        rights = "FA" if mask == FILE_ALL_ACCESS else "FR" if mask == FILE_GENERIC_READ else "0x%x" % mask
        parts.append("(A;%s;%s;;;%s)" % (inherit, rights, alias))
    return "D:%s%s" % ("P" if protected else "", "".join(parts))


def check_dacl(sddl, allowed, what, required=(), inherited_ok=False):
    """Reasons why ``sddl`` grants more than ``allowed`` (empty when it does not).

    ``allowed`` maps SIDs to the largest access mask each may hold; every other allow entry is a
    reason, and so is a DACL that inherits from its parent (unless ``inherited_ok``).
    ``required`` lists ``(sid, mask)`` entries that must be granted in full.
    """
    try:
        dacl = parse_dacl(sddl)
    except SddlError as exc:
        return ["cannot read the access list of %s: %s" % (what, exc)]
    reasons = []
    if not dacl["protected"] and not inherited_ok:
        reasons.append("%s inherits entries from its parent (the list must be protected)" % what)
    granted = {}
    for ace in dacl["aces"]:
        if ace["type"] != "allow" or "IO" in ace["flags"]:
            continue  # deny entries only take away; inherit-only entries do not apply to this object
        granted[ace["sid"]] = granted.get(ace["sid"], 0) | ace["mask"]
    for sid in sorted(granted):
        limit = allowed.get(sid)
        if limit is None:
            reasons.append("%s grants %s access (0x%x); only %s may have any" % (
                what, sid_name(sid), granted[sid], ", ".join(sid_name(s) for s in sorted(allowed))))
        elif granted[sid] & ~limit:
            reasons.append("%s grants %s more than 0x%x (0x%x)" % (what, sid_name(sid), limit, granted[sid]))
    for sid, mask in required:
        if granted.get(sid, 0) & mask != mask:
            reasons.append("%s does not grant %s the access it needs (0x%x)" % (what, sid_name(sid), mask))
    return reasons


# ----------------------------------------------------------------------------- the policies

#: Directories only SYSTEM and Administrators may touch (the engine's configuration, the checkpoint's).
ADMIN_ONLY_DIRECTORY = dacl_sddl([(SYSTEM, FILE_ALL_ACCESS, "OICI"), (ADMINISTRATORS, FILE_ALL_ACCESS, "OICI")])
#: An instance's key directory: ContainerUser may list it and open what it holds, not write.
KEY_DIRECTORY = dacl_sddl([
    (SYSTEM, FILE_ALL_ACCESS, "OICI"), (ADMINISTRATORS, FILE_ALL_ACCESS, "OICI"), (CONTAINER_USER, READ_AND_EXECUTE, ""),
])
#: An identity key file: SYSTEM and Administrators, and ContainerUser may read it (the agent's identity).
KEY_FILE = dacl_sddl([(SYSTEM, FILE_ALL_ACCESS, ""), (ADMINISTRATORS, FILE_ALL_ACCESS, ""), (CONTAINER_USER, FILE_GENERIC_READ, "")])
#: A file only SYSTEM and Administrators may open (the checkpoint's copies for the update engine).
ADMIN_ONLY_FILE = dacl_sddl([(SYSTEM, FILE_ALL_ACCESS, ""), (ADMINISTRATORS, FILE_ALL_ACCESS, "")])
#: An instance's state directory (outbox, replay cache): ContainerUser may change what is in it, as in the image's own
#: C:\vantage\state (named volumes would not copy that list, so a host directory with this one is mounted).
STATE_DIRECTORY = dacl_sddl([
    (SYSTEM, FILE_ALL_ACCESS, "OICI"), (ADMINISTRATORS, FILE_ALL_ACCESS, "OICI"), (CONTAINER_USER, FILE_MODIFY, "OICI"),
])
#: The short-lived directory the key generator container writes the new key into.
KEYGEN_DIRECTORY = dacl_sddl([
    (SYSTEM, FILE_ALL_ACCESS, "OICI"), (ADMINISTRATORS, FILE_ALL_ACCESS, "OICI"), (CONTAINER_USER, FILE_MODIFY, "OICI"),
])

POLICIES = {
    "admin_only_directory": {"sddl": ADMIN_ONLY_DIRECTORY,
                             "allowed": {SYSTEM: FILE_ALL_ACCESS, ADMINISTRATORS: FILE_ALL_ACCESS}},
    "key_directory": {"sddl": KEY_DIRECTORY,
                      "allowed": {SYSTEM: FILE_ALL_ACCESS, ADMINISTRATORS: FILE_ALL_ACCESS, CONTAINER_USER: READ_AND_EXECUTE}},
    "admin_only_file": {"sddl": ADMIN_ONLY_FILE,
                        "allowed": {SYSTEM: FILE_ALL_ACCESS, ADMINISTRATORS: FILE_ALL_ACCESS}},
    "state_directory": {"sddl": STATE_DIRECTORY,
                        "allowed": {SYSTEM: FILE_ALL_ACCESS, ADMINISTRATORS: FILE_ALL_ACCESS, CONTAINER_USER: FILE_MODIFY},
                        "required": ((CONTAINER_USER, FILE_MODIFY),)},
    "key_file": {"sddl": KEY_FILE,
                 "allowed": {SYSTEM: FILE_ALL_ACCESS, ADMINISTRATORS: FILE_ALL_ACCESS, CONTAINER_USER: FILE_GENERIC_READ},
                 "required": ((CONTAINER_USER, FILE_GENERIC_READ),)},
}


def check_policy(policy, sddl, what):
    """Reasons why the read-back ``sddl`` of ``what`` does not follow ``policy`` (a key of :data:`POLICIES`)."""
    spec = POLICIES[policy]
    return check_dacl(sddl, spec["allowed"], what, required=spec.get("required", ()))


def pipe_policy(group_sid=None):
    """What the engine's named pipe may grant: dockerd's own list, plus read/write for one group."""
    allowed = {SYSTEM: FILE_ALL_ACCESS, ADMINISTRATORS: FILE_ALL_ACCESS}
    if group_sid:
        allowed[group_sid] = FILE_GENERIC_READ | FILE_GENERIC_WRITE
    return allowed
