# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Windows scheduled tasks, rendered and checked on the controller.

The collection's scheduled tasks - the checkpoint's update and the egress reconciler - are Task
Scheduler XML documents (the schema ``http://schemas.microsoft.com/windows/2004/02/mit/task``) made
here by :func:`task_xml`, registered by ``win_scheduled_task_xml`` (``Register-ScheduledTask -Xml``)
and compared, field by field (:func:`task_fields`), with what ``Export-ScheduledTask`` reads back,
so a second run changes nothing. Every task runs as SYSTEM with the highest privileges.

The update schedule is checked here too (:func:`parse_schedule`): the Linux role asks
``systemd-analyze`` about an ``OnCalendar`` expression, which Windows has no counterpart of, so the
Windows schedule is a small expression of its own - ``daily HH:MM``, ``every N days HH:MM`` or
``weekly DAY[,DAY...] HH:MM`` - whose longest gap between two runs is computed exactly and refused
above the same two-week limit.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
SYSTEM_SID = "S-1-5-18"
DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_ABBREVIATIONS = dict((day[:3].lower(), day) for day in DAYS)
_SCHEDULE = re.compile(
    r"\s*(?:(?P<daily>daily)|every\s+(?P<every>[0-9]{1,3})\s+days?|weekly\s+(?P<days>[a-z]{3}(?:\s*,\s*[a-z]{3})*))"
    r"(?:\s+(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2}))?\s*", re.IGNORECASE)
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_SPAN = re.compile(r"\s*([0-9]+)\s*(s|sec|m|min|h|hr)?\s*")
#: the date the collection's calendar triggers start from (a trigger needs a start; runs begin at the next time)
START_DATE = "2025-01-01"


class TaskError(ValueError):
    """A schedule or setting that cannot become a task; the message names the variable."""


# ----------------------------------------------------------------------------- schedules


def parse_schedule(text, what="auto_update_windows_schedule"):
    """``{"kind": "daily"|"weekly", "days_interval" or "days", "time": "HH:MM"}`` from the schedule expression."""
    match = _SCHEDULE.fullmatch(str(text or ""))
    if not match:
        raise TaskError("%s must be 'daily HH:MM', 'every N days HH:MM' or 'weekly DAY[,DAY...] HH:MM' "
                        "(DAY: mon, tue, wed, thu, fri, sat, sun), got %r" % (what, text))
    hour, minute = int(match.group("hour") or 0), int(match.group("minute") or 0)
    if hour > 23 or minute > 59:
        raise TaskError("%s has the time %02d:%02d, which is not a time of day" % (what, hour, minute))
    time = "%02d:%02d" % (hour, minute)
    if match.group("days"):
        names = [name.strip().lower() for name in match.group("days").split(",")]
        unknown = [name for name in names if name not in _DAY_ABBREVIATIONS]
        if unknown:
            raise TaskError("%s names unknown days %s (use mon, tue, wed, thu, fri, sat, sun)" % (what, ", ".join(unknown)))
        days = sorted(set(_DAY_ABBREVIATIONS[name] for name in names), key=DAYS.index)
        return {"kind": "weekly", "days": days, "time": time}
    interval = 1 if match.group("daily") else int(match.group("every"))
    if interval < 1:
        raise TaskError("%s must run at least every 1 day, got every %d days" % (what, interval))
    return {"kind": "daily", "days_interval": interval, "time": time}


def longest_gap_days(schedule):
    """The most days between two runs of a parsed schedule (the random delay aside)."""
    if schedule["kind"] == "daily":
        return schedule["days_interval"]
    indexes = [DAYS.index(day) for day in schedule["days"]]
    return max(((b - a) % 7) or 7 for a, b in zip(indexes, indexes[1:] + indexes[:1]))


def check_schedule(text, max_days, what="auto_update_windows_schedule"):
    """The parsed schedule, or :class:`TaskError` when its runs are more than ``max_days`` apart."""
    schedule = parse_schedule(text, what)
    gap = longest_gap_days(schedule)
    if gap > max_days:
        raise TaskError("%s %r leaves up to %d days between runs; checkpoints must be updated at least every %d days "
                        "(auto_update_max_interval_days)" % (what, text, gap, max_days))
    return schedule


def duration(span, what="auto_update_randomized_delay"):
    """An ISO 8601 duration (``PT1H``) from a systemd-style span (``1h``, ``30min``, ``90s``, ``0``); None for zero."""
    match = _SPAN.fullmatch(str(span))
    if not match:
        raise TaskError("%s must be a time span such as 1h or 30min, got %r" % (what, span))
    seconds = int(match.group(1)) * {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[match.group(2)]
    return iso_duration(seconds) if seconds else None


def iso_duration(seconds):
    """``seconds`` as the ISO 8601 duration Task Scheduler writes (``PT1H30M``, ``P1DT2H``, ``PT0S``)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    clock = "".join("%d%s" % (value, unit) for value, unit in ((hours, "H"), (minutes, "M"), (rest, "S")) if value)
    text = "P" + ("%dD" % days if days else "") + ("T" + clock if clock else "")
    return text if text != "P" else "PT0S"


_ISO = re.compile(r"P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?")


def iso_seconds(text):
    """The seconds of an ISO 8601 duration (None stays None), so that ``PT60M`` and ``PT1H`` compare equal."""
    if text is None:
        return None
    match = _ISO.fullmatch(text)
    if not match:
        return text
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


# ----------------------------------------------------------------------------- the XML


def _sub(parent, tag, text=None):
    element = ElementTree.SubElement(parent, "{%s}%s" % (NAMESPACE, tag))
    if text is not None:
        element.text = str(text)
    return element


def _trigger(triggers, trigger):
    kind = trigger["type"]
    if kind == "boot":
        element = _sub(triggers, "BootTrigger")
        if trigger.get("delay"):
            _sub(element, "Delay", trigger["delay"])
        _sub(element, "Enabled", "true")
        return
    if kind == "repeat":
        element = _sub(triggers, "TimeTrigger")
        repetition = _sub(element, "Repetition")
        _sub(repetition, "Interval", trigger["interval"])
        _sub(repetition, "StopAtDurationEnd", "false")
        _sub(element, "StartBoundary", "%sT00:00:00" % START_DATE)
        _sub(element, "Enabled", "true")
        return
    schedule = trigger["schedule"]
    element = _sub(triggers, "CalendarTrigger")
    _sub(element, "StartBoundary", "%sT%s:00" % (START_DATE, schedule["time"]))
    _sub(element, "Enabled", "true")
    if trigger.get("random_delay"):
        _sub(element, "RandomDelay", trigger["random_delay"])
    if schedule["kind"] == "daily":
        by_day = _sub(element, "ScheduleByDay")
        _sub(by_day, "DaysInterval", schedule["days_interval"])
    else:
        by_week = _sub(element, "ScheduleByWeek")
        _sub(by_week, "WeeksInterval", 1)
        days = _sub(by_week, "DaysOfWeek")
        for day in schedule["days"]:
            _sub(days, day)


def task_xml(description, command, arguments, triggers, execution_time_limit, enabled=True, restart_interval=None):
    """A Task Scheduler document: run ``command arguments`` as SYSTEM (highest privileges) on ``triggers``.

    Never two runs at once (``IgnoreNew``), a run missed while the host was off happens when it can
    (``StartWhenAvailable``, like ``Persistent=true``), on battery too, stopped after
    ``execution_time_limit`` (``PT0S``: never); ``restart_interval`` restarts a failed run.
    """
    ElementTree.register_namespace("", NAMESPACE)
    task = ElementTree.Element("{%s}Task" % NAMESPACE, {"version": "1.4"})
    info = _sub(task, "RegistrationInfo")
    _sub(info, "Description", description)
    _sub(info, "Author", "vantage.checkpoint")
    trigger_list = _sub(task, "Triggers")
    for trigger in triggers:
        _trigger(trigger_list, trigger)
    principal = _sub(_sub(task, "Principals"), "Principal")
    principal.set("id", "Author")
    _sub(principal, "UserId", SYSTEM_SID)
    _sub(principal, "RunLevel", "HighestAvailable")
    settings = _sub(task, "Settings")
    _sub(settings, "MultipleInstancesPolicy", "IgnoreNew")
    _sub(settings, "DisallowStartIfOnBatteries", "false")
    _sub(settings, "StopIfGoingOnBatteries", "false")
    _sub(settings, "StartWhenAvailable", "true")
    _sub(settings, "Enabled", "true" if enabled else "false")
    _sub(settings, "ExecutionTimeLimit", execution_time_limit)
    if restart_interval:
        restart = _sub(settings, "RestartOnFailure")
        _sub(restart, "Interval", restart_interval)
        _sub(restart, "Count", 999)
    actions = _sub(task, "Actions")
    actions.set("Context", "Author")
    action = _sub(actions, "Exec")
    _sub(action, "Command", command)
    _sub(action, "Arguments", arguments)
    return ElementTree.tostring(task, encoding="unicode")


def _text(element, path):
    found = element.find(path, {"t": NAMESPACE})
    return None if found is None or found.text is None else found.text.strip()


def task_fields(xml):
    """The fields the collection sets, read from a task document (ours, or ``Export-ScheduledTask``'s)."""
    root = ElementTree.fromstring(_DECLARATION.sub("", xml, count=1))
    triggers = []
    for trigger in root.find("t:Triggers", {"t": NAMESPACE}) or []:
        kind = trigger.tag.split("}", 1)[1]
        fields = {"type": kind, "start": _text(trigger, "t:StartBoundary"), "delay": iso_seconds(_text(trigger, "t:Delay")),
                  "random_delay": iso_seconds(_text(trigger, "t:RandomDelay")),
                  "interval": iso_seconds(_text(trigger, "t:Repetition/t:Interval")),
                  "days_interval": _text(trigger, "t:ScheduleByDay/t:DaysInterval"),
                  "days": [day.tag.split("}", 1)[1] for day in trigger.findall("t:ScheduleByWeek/t:DaysOfWeek/*", {"t": NAMESPACE})],
                  "enabled": _text(trigger, "t:Enabled") or "true"}
        triggers.append(fields)
    return {
        "description": _text(root, "t:RegistrationInfo/t:Description"),
        "user": _text(root, "t:Principals/t:Principal/t:UserId"),
        "run_level": _text(root, "t:Principals/t:Principal/t:RunLevel"),
        "multiple_instances": _text(root, "t:Settings/t:MultipleInstancesPolicy") or "IgnoreNew",
        "start_when_available": _text(root, "t:Settings/t:StartWhenAvailable") or "false",
        "enabled": _text(root, "t:Settings/t:Enabled") or "true",
        "execution_time_limit": iso_seconds(_text(root, "t:Settings/t:ExecutionTimeLimit") or "PT72H"),
        "restart_interval": iso_seconds(_text(root, "t:Settings/t:RestartOnFailure/t:Interval")),
        "command": _text(root, "t:Actions/t:Exec/t:Command"),
        "arguments": _text(root, "t:Actions/t:Exec/t:Arguments"),
        "triggers": triggers,
    }


def same_task(current_xml, desired_xml):
    """Whether the registered task (exported XML, or None) already is the desired one."""
    if not current_xml:
        return False
    current = task_fields(current_xml)
    # Task Scheduler shows the SYSTEM account by name in exports
    if current["user"] in ("SYSTEM", "NT AUTHORITY\\SYSTEM"):
        current["user"] = SYSTEM_SID
    return current == task_fields(desired_xml)
