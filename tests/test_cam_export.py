"""export-cams invariants (spec §2, §13) on a tiny random-weight net, and evaluate-cams on top."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pcam_core.cam.export import compute_maps, export_cams, scaled_inputs
from pcam_core.cam.net import CamNet
from pcam_core.cam.store import CamStore
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.common.image_io import read_rgb

from cam_tiny_data import TINY_PARAMS, make_tiny_index


def _random_model(path, seed=0):
    torch.manual_seed(seed)
    net = CamNet("resnet18", num_classes=20)
    torch.save({"state_dict": net.state_dict(), "backbone": "resnet18", "config": TINY_PARAMS}, path)
    return net.eval()


@pytest.fixture()
def exported(tmp_path):
    index_path = make_tiny_index(tmp_path / "data", num_train=3, num_val=2, size=(37, 51), empty_val=True)
    net = _random_model(tmp_path / "model.pt")
    index = DatasetIndex.load(index_path)
    shard = tmp_path / "shard.txt"
    shard.write_text("\n".join(index.all_ids()) + "\n")
    out = tmp_path / "maps" / "0-of-1.h5"
    counts = export_cams(index_path, shard, tmp_path / "model.pt", TINY_PARAMS, out, device="cpu")
    return index_path, index, net, out, counts


def test_export_invariants_and_round_trip(exported, capsys):
    index_path, index, net, out, counts = exported
    assert counts == {"exported": 4, "skipped_without_classes": 1}
    with CamStore(out) as store:
        assert sorted(store.ids()) == sorted(r.id for r in index.records.values() if r.export_classes())
        for image_id, rec in store:
            record = index[image_id]
            h, w = record.height, record.width
            assert rec.keys.tolist() == sorted(record.export_classes())
            assert rec.cam.shape == (len(rec.keys), -(-h // 4), -(-w // 4))
            assert rec.high_res.shape == (len(rec.keys), h, w)
            for maps in (rec.cam, rec.high_res):
                assert maps.min() >= 0
                np.testing.assert_allclose(maps.reshape(len(rec.keys), -1).max(1), 1.0, atol=1e-3)
            # Round trip: the stored float16 maps equal a fresh computation to fp16 precision.
            inputs = scaled_inputs(read_rgb(record.image), TINY_PARAMS["export_scales"])
            cam, high_res = compute_maps(net, inputs, (h, w), rec.keys.tolist(), torch.device("cpu"))
            np.testing.assert_allclose(rec.cam, cam, atol=1e-3)
            np.testing.assert_allclose(rec.high_res, high_res, atol=1e-3)


def test_compute_maps_matches_a_direct_reference():
    """One scale by hand: ReLU, flip SUM, stride-16-span resize + crop, max-normalisation."""
    torch.manual_seed(3)
    net = CamNet("resnet18", num_classes=20).eval()
    rgb = np.random.default_rng(0).integers(0, 255, size=(37, 51, 3), dtype=np.uint8)
    x = scaled_inputs(rgb, [1.0])[0]
    cam, high_res = compute_maps(net, [x], (37, 51), [2, 7], torch.device("cpu"))
    with torch.no_grad():
        raw = torch.relu(net.classifier(net.features(torch.stack([x, x.flip(-1)]))))
    merged = (raw[0] + raw[1].flip(-1))[[1, 6]][None]
    ref_hr = F.interpolate(merged, (48, 64), mode="bilinear", align_corners=False)[0, :, :37, :51]
    ref_cam = F.interpolate(merged, (10, 13), mode="bilinear", align_corners=False)[0]
    ref_hr = ref_hr / (ref_hr.amax(dim=(1, 2), keepdim=True) + 1e-5)
    ref_cam = ref_cam / (ref_cam.amax(dim=(1, 2), keepdim=True) + 1e-5)
    np.testing.assert_allclose(high_res, ref_hr.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cam, ref_cam.numpy(), rtol=1e-5, atol=1e-6)


def test_evaluate_cams_on_the_export(exported, tmp_path):
    pytest.importorskip("pcam_core.evaluation.miou")
    from pcam_core.evaluation.cam_scores import evaluate_cams

    index_path, index, _, out, _ = exported
    result = evaluate_cams(index_path, "val", [out], 0.3, tmp_path / "m.json", tmp_path / "m.md")
    assert result["images"] == 2 and result["images_without_classes"] == 1
    assert 0.0 <= result["miou"] <= 1.0
    assert json.loads((tmp_path / "m.json").read_text())
    assert (tmp_path / "m.md").read_text().strip()
    # A store that lacks an image with classes is an error naming the count.
    train_only_shard = tmp_path / "none.txt"
    train_only_shard.write_text(index.split("train")[0].id + "\n")
    partial = tmp_path / "partial.h5"
    export_cams(index_path, train_only_shard, tmp_path / "model.pt", TINY_PARAMS, partial, device="cpu")
    with pytest.raises(KeyError, match="1 of 2 val images"):
        evaluate_cams(index_path, "val", [partial], 0.3, tmp_path / "p.json", tmp_path / "p.md")
