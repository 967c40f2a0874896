"""Flow quantisation, stacking and window assembly (twostream.preprocess), shared by training,
calibration and the runtime."""

import cv2
import numpy as np

from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.data import Clip, ClipSet, eval_windows
from twostream.preprocess import (FlowSpec, WindowPlan, available_flow_methods, preprocess_clip, quantise_flow,
                                  stack_fields, tower_inputs)


def test_quantisation_matches_the_contract_formula():
    flow = np.array([[[0.0, -20.0], [20.0, 50.0]], [[-50.0, 0.15], [0.08, -0.08]]], dtype=np.float32)  # (H, W, 2)
    q = quantise_flow(flow, 20.0)
    assert q.dtype == np.uint8 and q.shape == (2, 2, 2)  # planes (2, H, W)
    expected = np.clip(np.rint(flow * 128 / 20) + 128, 0, 255).transpose(2, 0, 1)
    assert np.array_equal(q, expected)
    assert q[0, 0, 0] == 128 and q[1, 0, 0] == 0 and q[1, 0, 1] == 255


def test_stack_interleaves_x_and_y_oldest_first():
    fields = np.zeros((3, 2, 4, 4), np.uint8)
    for i in range(3):
        fields[i, 0] = 10 * i
        fields[i, 1] = 10 * i + 1
    stack = stack_fields(fields)
    assert stack.shape == (6, 4, 4)
    assert [int(stack[c, 0, 0]) for c in range(6)] == [0, 1, 10, 11, 20, 21]
    assert stack.base is not None  # a view: a run of stored fields is never copied


def test_every_available_method_sees_a_shift():
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((64, 64)) * 255).astype(np.uint8), (7, 7), 2)
    shifted = np.roll(base, 2, axis=1)
    frames = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in (base, shifted)]
    for method in available_flow_methods():
        if method == "tvl1":
            continue  # 200 ms per field: covered by the runtime tests where it is used
        _, fields = preprocess_clip(frames, FlowSpec(method, (64, 64), 20.0))
        assert fields[0].min() == fields[0].max() == 128  # no predecessor: zero motion
        assert abs(fields[1, 0, 20:44, 20:44].astype(float).mean() - (128 + 2 * 6.4)) < 4


def test_window_gathers_t_frames_and_their_stacks():
    contract = ModelContract(classes=GESTURE_CLASSES, stack_length=2, num_segments=3, stride=2, input_size=(32, 32))
    frames = 10
    rgb = np.arange(frames, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 32, 32), np.uint8)
    flow = np.arange(frames, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 32, 32), np.uint8)
    plan = WindowPlan.of(contract, stride=2)
    assert plan.sampled(9).tolist() == [5, 7, 9]
    r, f = tower_inputs(rgb, flow, plan.sampled(9), contract.stack_length)
    assert r.shape == (3, 3, 32, 32) and f.shape == (3, 4, 32, 32) and r.dtype == f.dtype == np.float32
    assert [int(r[k, 0, 0, 0]) for k in range(3)] == [5, 7, 9]
    assert [int(v) for v in f[0, :, 0, 0]] == [4, 4, 5, 5]  # fields 4, 5 ending at frame 5
    windows = eval_windows(ClipSet((Clip(rgb, flow, 4),), GESTURE_CLASSES), contract, per_clip=3)
    assert windows[0] == (0, 6) and windows[-1] == (0, 9)
