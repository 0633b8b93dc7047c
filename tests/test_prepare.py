"""``dasslite.data.prepare`` against a real HTTP server on 127.0.0.1 serving tiny archives in the real formats
(zip, tar.gz) and Drive-style pages: layouts the readers accept, resume, corrupt archives, checksums, idempotent
reruns, half-extracted folders, the root boundary, the free-space check, ``--list`` and the ImageNet manual step."""
import hashlib
import json
import os
import random
import tarfile
import io
from dataclasses import replace

import pytest

import datasets  # noqa: F401  (registers the readers)
from dasslite.compat import build_dataset
from dasslite.config import get_cfg_default
from dasslite.data.prepare import (RECIPES, ArchiveError, ChecksumError, DiskSpaceError, DownloadError,
                                   ManualStepRequired, PrepareOptions, VerificationError, dataset_state, get_recipe,
                                   prepare_dataset)
from dasslite.data.prepare.__main__ import main as prepare_main
from dasslite.data.prepare.prepare import MARKER, WORK_DIR
from tests import dataset_fixtures as fx
from tests.prepare_fixtures import local_server, targz_tree, zip_tree


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The files as their servers publish them: EuroSAT.zip + its split JSON, the DTD tar.gz + its split JSON."""
    src = str(tmp_path_factory.mktemp("src"))
    eurosat_dir = fx.make_eurosat_tree(src, n_per_class=5)
    dtd_dir = fx.make_dtd_tree(src, n_per_class=5)
    random.seed(0)
    from dasslite.data.datasets.splits import read_and_split_data, save_split

    train, val, test = read_and_split_data(os.path.join(dtd_dir, "images"))
    dtd_split = os.path.join(src, "split_zhou_DescribableTextures.json")
    save_split(train, val, test, dtd_split, os.path.join(dtd_dir, "images"))
    with open(os.path.join(eurosat_dir, "split_zhou_EuroSAT.json"), "rb") as f:
        eurosat_split = f.read()
    with open(dtd_split, "rb") as f:
        dtd_split_bytes = f.read()
    os.makedirs(os.path.join(dtd_dir, "labels"))
    with open(os.path.join(dtd_dir, "labels", "labels_joint_anno.txt"), "w") as f:
        f.write("banded/banded_0000.jpg banded\n")
    split_counts = {k: len(v) for k, v in json.loads(eurosat_split).items()}
    return {"EuroSAT.zip": zip_tree(eurosat_dir, ["2750"]), "split_zhou_EuroSAT.json": eurosat_split,
            "dtd-r1.0.1.tar.gz": targz_tree(src, ["dtd"]), "split_zhou_DescribableTextures.json": dtd_split_bytes,
            "eurosat_counts": split_counts,
            "dtd_counts": {"train": len(train), "val": len(val), "test": len(test)}}


def served(name, server, files, counts, digests=True):
    """The real recipe ``name``, its archives on ``server`` (as a mirror), Drive files on its Drive endpoints, with
    the tiny files' MD5s and per-split counts in place of the real ones."""
    recipe = get_recipe(name).relocated(server.base)
    downloads = []
    for item in recipe.downloads:
        data = files[item.name]
        if item.url:
            server.files["/" + item.name] = data
            item = replace(item, md5=md5(data) if digests else "")
        else:
            server.drive[item.drive_id] = data
        downloads.append(item)
    return replace(recipe, downloads=tuple(downloads), checks=tuple(replace(c, counts=counts) for c in recipe.checks))


def options(server, **kwargs):
    return PrepareOptions(drive_url=server.drive_url, progress=False, **kwargs)


def reader_sizes(root, name):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.VERBOSE = str(root), name, -1, False
    dataset = build_dataset(cfg)
    return {"train": len(dataset.train_x), "val": len(dataset.val), "test": len(dataset.test)}


def test_eurosat_zip_and_drive_confirm_page_give_the_readers_layout_and_a_rerun_is_verified_and_skipped(
        tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        server.confirm.add(recipe.downloads[1].drive_id)  # the split file goes through the confirm page
        counts = prepare_dataset(recipe, str(root), options(server))
        assert counts == published["eurosat_counts"]
        assert ("/download?id=%s&export=download&confirm=t&uuid=0f1e2d3c" % recipe.downloads[1].drive_id,
                None) in server.requests
        assert reader_sizes(root, "EuroSAT") == published["eurosat_counts"]
        assert not os.path.exists(root / WORK_DIR / "downloads" / "eurosat" / "EuroSAT.zip")  # archive removed
        n_requests = len(server.requests)
        assert prepare_dataset(recipe, str(root), options(server)) == counts
        assert len(server.requests) == n_requests  # verified, nothing fetched
        assert dataset_state(recipe, str(root))["state"] == "ready"


def test_dtd_tar_gz_members_are_moved_into_the_dataset_folder(tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("dtd", server, published, published["dtd_counts"])
        prepare_dataset(recipe, str(root), options(server))
    assert sorted(os.listdir(root / "dtd")) == [MARKER, "images", "labels", "split_zhou_DescribableTextures.json"]
    assert reader_sizes(root, "DescribableTextures") == published["dtd_counts"]


def test_an_interrupted_transfer_is_resumed_with_a_range_request(tmp_path, published):
    root = tmp_path / "data"
    data = published["EuroSAT.zip"]
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        server.cut_once.add("/EuroSAT.zip")
        with pytest.raises(DownloadError) as info:
            prepare_dataset(recipe, str(root), options(server))
        part = root / WORK_DIR / "downloads" / "eurosat" / "EuroSAT.zip.part"
        assert f"{server.base}/EuroSAT.zip" in str(info.value) and str(part) in str(info.value)
        assert part.stat().st_size == len(data) // 2
        assert dataset_state(recipe, str(root))["state"] == "partial"
        prepare_dataset(recipe, str(root), options(server))
    ranges = [rng for path, rng in server.requests if path == "/EuroSAT.zip"]
    assert ranges == [None, f"bytes={len(data) // 2}-"]
    assert reader_sizes(root, "EuroSAT") == published["eurosat_counts"]


def test_a_wrong_checksum_names_url_and_file_and_keeps_nothing(tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        bad = replace(recipe, downloads=(replace(recipe.downloads[0], md5="0" * 32),) + recipe.downloads[1:])
        with pytest.raises(ChecksumError) as info:
            prepare_dataset(bad, str(root), options(server))
    message = str(info.value)
    assert "md5" in message and "0" * 32 in message and md5(published["EuroSAT.zip"]) in message
    assert f"{server.base}/EuroSAT.zip" in message and "EuroSAT.zip" in message
    assert os.listdir(root / WORK_DIR / "downloads" / "eurosat") == []
    assert not (root / "eurosat" / "2750").exists()


def test_a_corrupt_archive_is_an_error_and_a_good_one_afterwards_completes(tmp_path, published):
    root = tmp_path / "data"
    corrupt = dict(published, **{"EuroSAT.zip": published["EuroSAT.zip"][: len(published["EuroSAT.zip"]) - 200]})
    with local_server() as server:  # no digest published: only extraction can tell
        recipe = served("eurosat", server, corrupt, published["eurosat_counts"], digests=False)
        with pytest.raises(ArchiveError, match=r"(corrupt or truncated|neither a zip nor a tar).*URL: http.*"
                                               r"was deleted: run the same command again"):
            prepare_dataset(recipe, str(root), options(server))
        assert not (root / "eurosat" / "2750").exists()
        assert dataset_state(recipe, str(root))["state"] == "partial"
        assert not (root / WORK_DIR / "downloads" / "eurosat" / "EuroSAT.zip").exists()  # deleted, as it says
        server.files["/EuroSAT.zip"] = published["EuroSAT.zip"]
        assert prepare_dataset(recipe, str(root), options(server)) == published["eurosat_counts"]


def test_a_half_extracted_dataset_is_redone(tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        prepare_dataset(recipe, str(root), options(server))
        # an extraction that died half way: marker and step record gone, images missing, a stray file, scratch left
        os.remove(root / "eurosat" / MARKER)
        steps_file = root / WORK_DIR / "eurosat.steps.json"
        steps = json.loads(steps_file.read_text())
        steps_file.write_text(json.dumps({k: "started" if k.startswith("EuroSAT.zip") else v
                                          for k, v in steps.items()}))
        forest = root / "eurosat" / "2750" / "Forest"
        for name in sorted(os.listdir(forest))[:3]:
            os.remove(forest / name)
        (root / "eurosat" / "2750" / "stray.txt").write_text("left over")
        (root / WORK_DIR / "tmp" / "eurosat" / "EuroSAT.zip.abc").mkdir(parents=True)
        assert dataset_state(recipe, str(root))["state"] == "partial"
        n_before = len(server.requests)
        assert prepare_dataset(recipe, str(root), options(server)) == published["eurosat_counts"]
        assert server.requests[n_before:] == [("/EuroSAT.zip", None)]  # the split file's step was still done
    assert not (root / "eurosat" / "2750" / "stray.txt").exists()
    assert not (root / WORK_DIR / "tmp" / "eurosat").exists()


def test_a_ready_dataset_that_no_longer_verifies_is_prepared_again(tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        prepare_dataset(recipe, str(root), options(server))
        victim = root / "eurosat" / "2750" / "River" / sorted(os.listdir(root / "eurosat" / "2750" / "River"))[0]
        victim.write_bytes(b"not a jpeg")
        prepare_dataset(recipe, str(root), options(server))
    assert victim.read_bytes()[:2] == b"\xff\xd8"  # a JPEG again


def test_nothing_outside_the_root_is_touched_and_escaping_members_are_refused(tmp_path, published):
    root = tmp_path / "data"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as archive:
        payload = b"escaped"
        info = tarfile.TarInfo("../../outside.txt")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    with local_server() as server:
        recipe = served("dtd", server, dict(published, **{"dtd-r1.0.1.tar.gz": evil.getvalue()}),
                        published["dtd_counts"])
        with pytest.raises(ArchiveError):
            prepare_dataset(recipe, str(root), options(server))
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        prepare_dataset(recipe, str(root), options(server))
    assert sorted(os.listdir(tmp_path)) == ["data"]
    assert not (tmp_path.parent / "outside.txt").exists()
    assert sorted(os.listdir(root)) == [WORK_DIR, "dtd", "eurosat"]


def test_the_free_space_check_runs_before_any_byte_is_written(tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        with pytest.raises(DiskSpaceError, match="needs about .* GiB under .* only .* GiB is free"):
            prepare_dataset(recipe, str(root), options(server, space_probe=lambda path: 100))
        assert not os.listdir(root / WORK_DIR / "downloads" / "eurosat")
        # announced size x 2 (archive + extraction) fits exactly: goes ahead
        room = 2 * len(published["EuroSAT.zip"])
        prepare_dataset(recipe, str(root), options(server, space_probe=lambda path: room))


def test_a_drive_quota_page_names_the_manual_link_and_the_target_file(tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        drive_id = recipe.downloads[1].drive_id
        server.quota.add(drive_id)
        with pytest.raises(DownloadError) as info:
            prepare_dataset(recipe, str(root), options(server))
        message = str(info.value)
        assert f"https://drive.google.com/file/d/{drive_id}/view" in message
        assert "Too many users" in message and "quota" in message
        target = root / WORK_DIR / "downloads" / "eurosat" / "split_zhou_EuroSAT.json"
        assert str(target) in message
        target.write_bytes(published["split_zhou_EuroSAT.json"])  # what the message says to do
        assert prepare_dataset(recipe, str(root), options(server)) == published["eurosat_counts"]


def test_published_counts_that_differ_fail_verification_with_both_numbers(tmp_path, published):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, dict(published["eurosat_counts"], test=8100))
        with pytest.raises(VerificationError, match=r"test \d+ \(published 8100\)"):
            prepare_dataset(recipe, str(root), options(server))
    assert not (root / "eurosat" / MARKER).exists()


def test_imagenet_says_what_to_fetch_then_finishes_the_layout(tmp_path):
    root = tmp_path / "data"
    recipe = RECIPES["imagenet"]
    classnames = "".join(f"{wnid} {name}\n" for wnid, name in fx.IMAGENET_CLASSES[:3]).encode()
    tiny = replace(recipe, checks=tuple(replace(c, classes=3, counts={"test": 6} if c.counts else {})
                                        for c in recipe.checks))
    with local_server() as server:
        server.drive[recipe.downloads[0].drive_id] = classnames
        with pytest.raises(ManualStepRequired, match=r"(?s)image-net\.org.*images/train/<wnid>"):
            prepare_dataset(tiny, str(root), options(server))
        assert (root / "imagenet" / "classnames.txt").read_bytes() == classnames
        for split, n in (("train", 4), ("val", 2)):  # put one level too high, as people often do
            for wnid, _ in fx.IMAGENET_CLASSES[:3]:
                for i in range(n):
                    fx.write_image(str(root / "imagenet" / split / wnid / f"{wnid}_{i}.JPEG"))
        assert prepare_dataset(tiny, str(root), options(server)) == {"train": 12, "test": 6}
        assert sorted(os.listdir(root / "imagenet" / "images")) == ["train", "val"]
        # a variant copies the class-name file from imagenet/ instead of downloading it
        n_requests = len(server.requests)
        variant = RECIPES["imagenet_sketch"]
        with pytest.raises(ManualStepRequired, match="ImageNet-Sketch"):
            prepare_dataset(variant, str(root), options(server))
        assert len(server.requests) == n_requests
        assert (root / "imagenet-sketch" / "classnames.txt").read_bytes() == classnames
    cfg_sizes = reader_sizes(root, "ImageNet")
    assert cfg_sizes == {"train": 12, "val": 6, "test": 6}


def test_list_shows_missing_partial_and_ready_with_sizes(tmp_path, published, capsys):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        server.cut_once.add("/EuroSAT.zip")
        with pytest.raises(DownloadError):
            prepare_dataset(recipe, str(root), options(server))
        capsys.readouterr()
        assert prepare_main(["--list", "eurosat", "dtd", "--root", str(root)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].split()[:3] == ["eurosat", "eurosat", "partial"] and lines[2].split()[2] == "missing"
        prepare_dataset(recipe, str(root), options(server))
        capsys.readouterr()
        assert prepare_main(["--list", "eurosat", "--root", str(root)]) == 0
        line = capsys.readouterr().out.splitlines()[1]
        assert line.split()[2] == "ready" and "KiB" in line
        assert f"train {published['eurosat_counts']['train']}" in line


def test_cli_prepares_through_a_mirror_and_exits_nonzero_on_failure(tmp_path, published, monkeypatch, capsys):
    root = tmp_path / "data"
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        monkeypatch.setenv("DASSLITE_DRIVE_URL", server.drive_url)
        # the real recipe's MD5 is the published archive's, so the tiny one served by the mirror is refused
        assert prepare_main(["eurosat", "--root", str(root), "--mirror", server.base, "--no-progress"]) == 1
        out = capsys.readouterr().out
        assert "0 of 1 dataset(s) ready" in out and "ChecksumError" in out and f"{server.base}/EuroSAT.zip" in out
        with pytest.raises(SystemExit):
            prepare_main(["eurosatt", "--root", str(root)])
        assert "Did you mean \"eurosat\"" in capsys.readouterr().err
        assert recipe.downloads[0].url == f"{server.base}/EuroSAT.zip"


def test_every_recipe_matches_its_reader():
    """Folder, split-file name and image folder of each recipe are the ones its registered reader reads."""
    import inspect

    from dasslite.compat import DATASET_REGISTRY

    assert len(RECIPES) == 15
    for recipe in RECIPES.values():
        reader = DATASET_REGISTRY.get(recipe.reader)
        assert reader.dataset_dir == recipe.dataset_dir, recipe.name
        source = inspect.getsource(inspect.getmodule(reader))
        for check in recipe.checks:
            if check.kind == "split_json":
                assert f'"{check.path}"' in source and (not check.prefix or f'"{check.prefix}"' in source)
            if check.kind == "class_folders" and recipe.name != "imagenet":
                assert reader.image_subdir == check.path, recipe.name
        for item in recipe.downloads:
            assert bool(item.url) != bool(item.drive_id), item.name


def test_a_folder_the_user_filled_is_completed_not_replaced(tmp_path, published):
    """A dataset folder this tool did not make: what is there is kept, only the missing files are fetched."""
    root = tmp_path / "data"
    fx.make_eurosat_tree(str(root), n_per_class=5, write_split=False)
    mine = root / "eurosat" / "2750" / "Forest" / "my_note.txt"
    mine.write_text("mine")
    with local_server() as server:
        recipe = served("eurosat", server, published, published["eurosat_counts"])
        assert prepare_dataset(recipe, str(root), options(server)) == published["eurosat_counts"]
        assert {p for p, _ in server.requests} == {f"/uc?export=download&id={recipe.downloads[1].drive_id}"}
    assert mine.read_text() == "mine"
