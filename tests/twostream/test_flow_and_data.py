"""Flow quantisation and window assembly, shared by training and the runtime."""

import numpy as np

from twostream.preprocess import OpticalFlow, available_flow_methods, clip_flows, quantise_flow, stack_fields
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.data import Clip, ClipSet, eval_windows, make_window, window_frames


def test_quantisation_matches_the_contract_formula():
    flow = np.array([[[0.0, -20.0], [20.0, 50.0]], [[-50.0, 0.15], [0.08, -0.08]]], dtype=np.float32)
    q = quantise_flow(flow, 20.0)
    assert q.dtype == np.uint8
    expected = np.clip(np.rint(flow * 128 / 20) + 128, 0, 255)
    assert np.array_equal(q, expected)
    assert q[0, 0, 0] == 128 and q[0, 0, 1] == 0 and q[0, 1, 1] == 255


def test_stack_interleaves_x_and_y_oldest_first():
    fields = np.zeros((3, 4, 4, 2), np.uint8)
    for i in range(3):
        fields[i, ..., 0] = 10 * i
        fields[i, ..., 1] = 10 * i + 1
    stack = stack_fields(fields)
    assert stack.shape == (6, 4, 4)
    assert [int(stack[c, 0, 0]) for c in range(6)] == [0, 1, 10, 11, 20, 21]


def test_every_available_method_sees_a_shift():
    rng = np.random.default_rng(0)
    base = (rng.random((64, 64)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (7, 7), 2)
    shifted = np.roll(base, 2, axis=1)
    for method in available_flow_methods():
        if method == "tvl1":
            continue  # 200 ms per field: covered by the runtime tests where it is used
        fields = clip_flows(np.stack([base, shifted]), OpticalFlow(method), 20.0)
        assert fields[0].min() == fields[0].max() == 128  # no predecessor: zero motion
        assert abs(fields[1, 20:44, 20:44, 0].astype(float).mean() - (128 + 2 * 6.4)) < 4


def test_window_gathers_t_frames_and_their_stacks():
    contract = ModelContract(classes=GESTURE_CLASSES, stack_length=2, num_segments=3, stride=2, input_size=(32, 32))
    frames = 10
    rgb = np.arange(frames, dtype=np.uint8)[:, None, None, None] * np.ones((1, 32, 32, 3), np.uint8)
    flow = np.arange(frames, dtype=np.uint8)[:, None, None, None] * np.ones((1, 32, 32, 2), np.uint8)
    clip = Clip(rgb, flow, 4)
    assert window_frames(9, contract, 2) == [5, 7, 9]
    r, f = make_window(clip, 9, contract, 2)
    assert r.shape == (3, 3, 32, 32) and f.shape == (3, 4, 32, 32)
    assert [int(r[k, 0, 0, 0]) for k in range(3)] == [5, 7, 9]
    assert [int(v) for v in f[0, :, 0, 0]] == [4, 4, 5, 5]  # fields 4, 5 ending at frame 5
    windows = eval_windows(ClipSet((clip,), GESTURE_CLASSES), contract, per_clip=3)
    assert windows[0] == (0, 6) and windows[-1] == (0, 9)
