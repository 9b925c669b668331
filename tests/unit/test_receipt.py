"""The receipt's JSON: round trip, its own digest, and what an edited or old receipt means."""

from __future__ import annotations

import json

import pytest

from cema.model.receipt import DIGEST_KEY, Receipt, receipt_digest
from cema.store import RECEIPT_NAME, Store

RECEIPT = Receipt(
    address="a1" * 12,
    kind="conda",
    platform="linux-64",
    conda=(("python", "3.11.9"), ("zlib", "1.3")),
    pip=(("six", "1.16.0"),),
    python="3.11.9",
    created=1_700_000_000.0,
)


def test_a_receipt_round_trips_with_its_digest() -> None:
    text = RECEIPT.to_json()
    data = json.loads(text)
    assert data[DIGEST_KEY] == receipt_digest(data)
    assert data[DIGEST_KEY].startswith("sha256:") and len(data[DIGEST_KEY]) == 7 + 64
    assert Receipt.from_json(text) == RECEIPT


def test_the_digest_ignores_layout_but_not_content() -> None:
    data = json.loads(RECEIPT.to_json())
    # another indentation or key order is the same receipt
    assert Receipt.from_json(json.dumps(data, indent=4)) == RECEIPT
    assert Receipt.from_json(json.dumps(dict(reversed(data.items())))) == RECEIPT


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("conda", [["python", "3.11.9"], ["zlib", "1.3.1"]]),  # a version changed by hand
        ("pip", []),
        ("address", "b2" * 12),
        ("created", 1_700_000_001.0),
        ("engine", "micromamba"),
        (DIGEST_KEY, "sha256:" + "0" * 64),
    ],
)
def test_an_edited_receipt_is_refused(key: str, value: object) -> None:
    data = json.loads(RECEIPT.to_json())
    data[key] = value
    with pytest.raises(ValueError, match="digest"):
        Receipt.from_json(json.dumps(data))


def test_a_receipt_without_a_digest_is_refused() -> None:
    data = json.loads(RECEIPT.to_json())
    del data[DIGEST_KEY]
    with pytest.raises(ValueError, match="no digest"):
        Receipt.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["[]", '"receipt"', "{}", '{"receipt": 2}', "not json"])
def test_garbage_is_refused_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        Receipt.from_json(text)


def test_the_store_treats_an_edited_receipt_as_no_receipt(tmp_path) -> None:
    store = Store(tmp_path / "store")
    prefix = store.prefix(RECEIPT.address)
    prefix.mkdir(parents=True)
    store.write_receipt(prefix, RECEIPT)
    assert store.receipt(RECEIPT.address) == RECEIPT
    path = prefix / RECEIPT_NAME
    path.write_text(path.read_text().replace('"1.3"', '"1.3.1"'))
    assert store.receipt(RECEIPT.address) is None
    assert store.inventory() == {}


BUILT = Receipt(
    address="c3" * 12,
    kind="conda",
    platform="linux-64",
    conda=(("python", "3.11.9"), ("zlib", "1.3")),
    builds=(("python", "h955ad1f_0_cpython"), ("zlib", "h4ab18f5_1")),
    python="3.11.9",
    created=1_700_000_000.0,
)


def test_a_receipt_records_conda_builds() -> None:
    text = BUILT.to_json()
    data = json.loads(text)
    assert data["builds"] == {"python": "h955ad1f_0_cpython", "zlib": "h4ab18f5_1"}
    assert data["conda"] == [["python", "3.11.9"], ["zlib", "1.3"]]  # as before: pairs
    assert Receipt.from_json(text) == BUILT
    data["builds"]["zlib"] = "h4ab18f5_2"  # a build changed by hand
    with pytest.raises(ValueError, match="digest"):
        Receipt.from_json(json.dumps(data))


def test_a_receipt_written_before_builds_is_still_read() -> None:
    data = json.loads(BUILT.to_json())
    del data["builds"]
    data[DIGEST_KEY] = receipt_digest(data)  # what an older Cema wrote
    old = Receipt.from_json(json.dumps(data))
    assert old.builds == () and old.packages() == BUILT.packages()


@pytest.mark.parametrize("builds", [["zlib", "h4ab18f5_1"], {"zlib": 1}, "h4ab18f5_1"])
def test_malformed_builds_are_refused(builds: object) -> None:
    data = json.loads(BUILT.to_json())
    data["builds"] = builds
    data[DIGEST_KEY] = receipt_digest(data)
    with pytest.raises((ValueError, TypeError)):
        Receipt.from_json(json.dumps(data))


def test_the_embedded_sync_and_the_scripts_write_the_builds(tmp_path) -> None:
    from cema.engines.builder import BuildStep, NullReporter, Reporter
    from cema.engines.micromamba.common import receipt_for
    from cema.model.lock import CondaRecord, LockedPlatform
    from cema.sync import Resolved, build_prefix

    record = CondaRecord(
        name="zlib",
        version="1.3",
        build="h4ab18f5_1",
        build_number=1,
        subdir="linux-64",
        channel="https://conda.anaconda.org/conda-forge/",
        url="https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-h4ab18f5_1.conda",
        sha256="a" * 64,
    )
    item = Resolved(
        env="a",
        content=LockedPlatform(platform="linux-64", kind="conda", conda=[record]),
        address="d4" * 12,
    )

    class Fake:
        name = "fake"

        def build(self, *, step: BuildStep, reporter: Reporter) -> None:
            (step.staging / "conda-meta").mkdir(parents=True)

    store = Store(tmp_path / "store")
    build_prefix(store, item, builder=Fake(), reporter=NullReporter())
    receipt = store.receipt(item.address)
    assert receipt is not None and receipt.builds == (("zlib", "h4ab18f5_1"),)
    assert receipt_for(item, created=0.0).builds == (("zlib", "h4ab18f5_1"),)
