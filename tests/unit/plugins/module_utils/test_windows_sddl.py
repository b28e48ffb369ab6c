# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_windows_sddl: reading access lists back and judging them by what they grant, not how they are spelled."""

from __future__ import annotations

import pytest

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_sddl as sddl
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers


def test_generic_rights_are_judged_as_windows_stores_them():
    # dockerd creates its pipe with D:P(A;;GA;;;BA)(A;;GA;;;SY)(A;;GRGW;;;<group>); read back, the same
    # descriptor shows FA and 0x12019f.
    written = sddl.parse_dacl("D:P(A;;GA;;;BA)(A;;GA;;;SY)(A;;GRGW;;;%s)" % answers.GROUP_SID)
    read_back = sddl.parse_dacl("O:BAG:SYD:P(A;;FA;;;BA)(A;;FA;;;SY)(A;;0x12019f;;;%s)" % answers.GROUP_SID)
    assert written == read_back
    assert [ace["mask"] for ace in read_back["aces"]] == [0x1F01FF, 0x1F01FF, 0x12019F]
    assert [ace["sid"] for ace in read_back["aces"]] == ["S-1-5-32-544", "S-1-5-18", answers.GROUP_SID]


def test_protection_and_inheritance_flags_are_read():
    dacl = sddl.parse_dacl("D:PAI(A;OICI;FA;;;SY)(A;OICIIO;GA;;;CO)(A;ID;0x1200a9;;;BU)")
    assert dacl["protected"] is True
    assert [ace["flags"] for ace in dacl["aces"]] == [("OI", "CI"), ("OI", "CI", "IO"), ("ID",)]
    assert sddl.parse_dacl("D:AI(A;;FA;;;SY)")["protected"] is False


@pytest.mark.parametrize("text", ["", "O:BAG:SY", "D:P(A;;FA;;SY)", "D:P(A;;ZZ;;;SY)", "D:P(A;;FA;;;Everyone)",
                                  "D:P(OA;;FA;guid;;;SY)", None])
def test_unreadable_sddl_is_an_error(text):
    with pytest.raises(sddl.SddlError):
        sddl.parse_dacl(text)


def test_the_policies_grant_what_docs_windows_md_says():
    assert sddl.KEY_FILE == "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;S-1-5-93-2-2)"
    assert sddl.KEY_DIRECTORY == "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;;0x1200a9;;;S-1-5-93-2-2)"
    assert sddl.ADMIN_ONLY_DIRECTORY == "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
    assert sddl.KEYGEN_DIRECTORY == "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;S-1-5-93-2-2)"
    for policy, spec in sddl.POLICIES.items():
        assert sddl.check_policy(policy, spec["sddl"], policy) == []


def test_a_read_back_key_file_with_the_auto_inherited_flag_passes():
    assert sddl.check_policy("key_file", "D:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;S-1-5-93-2-2)", "k") == []


@pytest.mark.parametrize("text, words", [
    ("D:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;FR;;;S-1-5-93-2-2)", "inherits entries from its parent"),
    ("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;S-1-5-93-2-2)(A;;FR;;;BU)", "grants Users (S-1-5-32-545) access (0x120089)"),
    ("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;AU)(A;;FR;;;S-1-5-93-2-2)", "grants Authenticated Users (S-1-5-11)"),
    ("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1301bf;;;S-1-5-93-2-2)", "grants ContainerUser (S-1-5-93-2-2) more than 0x120089"),
    ("D:P(A;;FA;;;SY)(A;;FA;;;BA)", "does not grant ContainerUser (S-1-5-93-2-2) the access it needs"),
    ("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;GA;;;S-1-5-93-2-2)", "more than 0x120089 (0x1f01ff)"),
])
def test_a_key_file_granting_more_or_less_is_refused(text, words):
    reasons = sddl.check_policy("key_file", text, "the key file C:\\k\\identity.pem")
    assert any(words in reason for reason in reasons), reasons
    assert all(reason.startswith("the key file C:\\k\\identity.pem") for reason in reasons)


def test_deny_and_inherit_only_entries_do_not_count_as_grants():
    text = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(D;;FA;;;WD)(A;OICIIO;FA;;;CO)"
    assert sddl.check_policy("admin_only_directory", text, "d") == []


def test_unreadable_access_lists_fail_closed():
    assert sddl.check_policy("key_file", "garbage", "the key file k") == [
        "cannot read the access list of the key file k: no DACL in 'garbage'"]
    assert sddl.check_policy("key_file", None, "k")[0].startswith("cannot read the access list of k")


def test_pipe_policy_allows_one_group_read_write_only():
    allowed = sddl.pipe_policy(answers.GROUP_SID)
    assert sddl.check_dacl("D:P(A;;GA;;;BA)(A;;GA;;;SY)(A;;GRGW;;;%s)" % answers.GROUP_SID, allowed, "p") == []
    assert "grants %s more than" % answers.GROUP_SID in sddl.check_dacl(
        "D:P(A;;GA;;;BA)(A;;GA;;;SY)(A;;GA;;;%s)" % answers.GROUP_SID, allowed, "p")[0]
    # npipe's default descriptor (no SDDL given) grants Everyone read: refused
    assert "grants Everyone (S-1-1-0)" in sddl.check_dacl(
        "D:(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;CO)(A;;FR;;;WD)(A;;FR;;;AN)", sddl.pipe_policy(), "p", inherited_ok=True)[0]
