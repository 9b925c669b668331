"""Table-driven tests of the pure planner: create, update, reuse, remove."""

from __future__ import annotations

import pytest

from cema.model.plan import Create, Remove, Reuse, Target, Update, diff_packages, make_plan
from cema.model.receipt import Receipt


def receipt(address: str, **packages: str) -> Receipt:
    return Receipt(
        address=address, kind="conda", platform="linux-64", conda=tuple(sorted(packages.items()))
    )


READY = {
    "A1": receipt("A1", openssl="3.2.1", xz="5.2.6"),
    "B1": receipt("B1", six="1.16.0"),
    "OLD": receipt("OLD", zlib="1.2"),
}


def target(env: str, address: str, **packages: str) -> Target:
    return Target(env=env, address=address, kind="conda", packages=packages)


@pytest.mark.parametrize(
    ("case", "targets", "last", "elsewhere", "prune", "expected"),
    [
        (
            "first sync builds",
            [target("a", "A9")],
            {},
            set(),
            False,
            [Create(env="a", address="A9", kind="conda")],
        ),
        (
            "content already in store (another project) is reused",
            [target("a", "A1")],
            {},
            set(),
            False,
            [Reuse(env="a", address="A1", kind="conda")],
        ),
        (
            "nothing changed",
            [target("a", "A1")],
            {"a": "A1"},
            set(),
            False,
            [Reuse(env="a", address="A1", kind="conda")],
        ),
        (
            "prefix vanished: rebuilt",
            [target("a", "A9")],
            {"a": "A9"},
            set(),
            False,
            [Create(env="a", address="A9", kind="conda")],
        ),
        (
            "no prune: old prefix stays",
            [target("a", "A1")],
            {"a": "A1", "gone": "OLD"},
            set(),
            False,
            [Reuse(env="a", address="A1", kind="conda")],
        ),
        (
            "prune removes what the project dropped",
            [target("a", "A1")],
            {"a": "A1", "gone": "OLD"},
            set(),
            True,
            [Reuse(env="a", address="A1", kind="conda"), Remove(address="OLD", was="gone")],
        ),
        (
            "prune keeps what another project uses",
            [target("a", "A1")],
            {"a": "A1", "gone": "OLD"},
            {"OLD"},
            True,
            [Reuse(env="a", address="A1", kind="conda")],
        ),
        (
            "prune never removes a target shared by two envs",
            [target("a", "A1"), target("b", "A1")],
            {"a": "A1", "b": "A1"},
            set(),
            True,
            [
                Reuse(env="a", address="A1", kind="conda"),
                Reuse(env="b", address="A1", kind="conda"),
            ],
        ),
    ],
)
def test_plan_table(case, targets, last, elsewhere, prune, expected) -> None:  # type: ignore[no-untyped-def]
    plan = make_plan(
        targets, ready=READY, last_synced=last, referenced_elsewhere=elsewhere, prune=prune
    )
    assert list(plan.actions) == expected, case


def test_update_builds_and_shows_the_package_diff() -> None:
    plan = make_plan(
        [target("a", "A2", openssl="3.3.1", xz="5.2.6", certifi="2024.6.2")],
        ready=READY,
        last_synced={"a": "A1"},
    )
    (action,) = plan.actions
    assert isinstance(action, Update)
    assert action.build and action.old_address == "A1" and action.address == "A2"
    assert action.diff.added == (("certifi", "2024.6.2"),)
    assert action.diff.changed == (("openssl", "3.2.1", "3.3.1"),)
    assert action.diff.removed == ()
    assert action.diff.lines() == ["+ certifi 2024.6.2", "~ openssl 3.2.1 -> 3.3.1"]
    assert plan.builds == (action,)
    assert not plan.is_noop


def test_update_to_content_already_built_needs_no_build() -> None:
    plan = make_plan([target("a", "B1", six="1.16.0")], ready=READY, last_synced={"a": "A1"})
    (action,) = plan.actions
    assert isinstance(action, Update) and not action.build
    assert action.diff.removed == (("openssl", "3.2.1"), ("xz", "5.2.6"))
    assert plan.builds == ()


def test_plan_json_and_order_is_by_env_name() -> None:
    plan = make_plan([target("z", "A1"), target("m", "A9")], ready=READY, last_synced={})
    assert [a["env"] for a in plan.to_json()] == ["m", "z"]
    assert plan.to_json()[0] == {"action": "create", "env": "m", "address": "A9", "kind": "conda"}


def test_diff_packages_empty_is_falsy() -> None:
    assert not diff_packages({"a": "1"}, {"a": "1"})
    assert diff_packages({}, {"a": "1"})


# --- build-only changes: the same version, another build ------------------------------------


def built(address: str, builds: dict[str, str], **packages: str) -> Receipt:
    return Receipt(
        address=address,
        kind="conda",
        platform="linux-64",
        conda=tuple(sorted(packages.items())),
        builds=tuple(sorted(builds.items())),
    )


def test_a_build_only_change_shows_both_builds() -> None:
    ready = {"A1": built("A1", {"openssl": "h1_0", "xz": "h2_0"}, openssl="3.2.1", xz="5.2.6")}
    new = Target(
        env="a",
        address="A2",
        kind="conda",
        packages={"openssl": "3.3.1", "xz": "5.2.6"},
        builds={"openssl": "h9_0", "xz": "h2_1"},
    )
    (action,) = make_plan([new], ready=ready, last_synced={"a": "A1"}).actions
    assert isinstance(action, Update)
    assert action.diff  # not an empty diff any more
    assert action.diff.changed == (("openssl", "3.2.1", "3.3.1"),)
    assert action.diff.rebuilt == (("xz", "5.2.6", "h2_0", "h2_1"),)
    assert action.diff.lines() == ["~ openssl 3.2.1 -> 3.3.1", "~ xz 5.2.6 h2_0 -> h2_1"]
    (entry,) = make_plan([new], ready=ready, last_synced={"a": "A1"}).to_json()
    # the keys of before, as before; the build-only changes in a key of their own
    assert entry["changed"] == [["openssl", "3.2.1", "3.3.1"]]
    assert entry["added"] == [] and entry["removed"] == []
    assert entry["rebuilt"] == [["xz", "5.2.6", "h2_0", "h2_1"]]


def test_a_receipt_without_builds_shows_versions_only() -> None:
    ready = {"A1": receipt("A1", xz="5.2.6", zlib="1.2")}  # written before receipts had builds
    new = Target(
        env="a",
        address="A2",
        kind="conda",
        packages={"xz": "5.2.6", "zlib": "1.3"},
        builds={"xz": "h2_1", "zlib": "h0_0"},
    )
    (action,) = make_plan([new], ready=ready, last_synced={"a": "A1"}).actions
    assert isinstance(action, Update)
    assert action.diff.rebuilt == ()
    assert action.diff.lines() == ["~ zlib 1.2 -> 1.3"]


def test_diff_packages_with_builds() -> None:
    same = diff_packages({"a": "1"}, {"a": "1"}, old_builds={"a": "0"}, new_builds={"a": "0"})
    assert not same
    other = diff_packages({"a": "1"}, {"a": "1"}, old_builds={"a": "0"}, new_builds={"a": "1"})
    assert other and other.lines() == ["~ a 1 0 -> 1"]
    # a build known on one side only is no change (a pip package has none)
    assert not diff_packages({"a": "1"}, {"a": "1"}, old_builds={}, new_builds={"a": "1"})


def test_a_resolved_target_carries_the_locked_builds() -> None:
    from cema.model.lock import CondaRecord, LockedPlatform, PipRecord
    from cema.sync import Resolved

    content = LockedPlatform(
        platform="linux-64",
        kind="conda",
        conda=[
            CondaRecord(
                name="xz",
                version="5.2.6",
                build="h166bdaf_0",
                build_number=0,
                subdir="linux-64",
                channel="https://conda.anaconda.org/conda-forge/",
                url="https://conda.anaconda.org/conda-forge/linux-64/xz-5.2.6-h166bdaf_0.conda",
                sha256="a" * 64,
            )
        ],
        pip=[PipRecord(name="six", version="1.16.0", url="https://x/six.whl", sha256="b" * 64)],
    )
    target = Resolved(env="a", content=content, address="A1").target()
    assert dict(target.packages) == {"xz": "5.2.6", "six": "1.16.0"}
    assert dict(target.builds) == {"xz": "h166bdaf_0"}
