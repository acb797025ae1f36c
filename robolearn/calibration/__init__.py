"""Camera calibration: ChArUco boards, intrinsics, hand-eye extrinsics and the calibration file.

A calibration file (``robolearn/hal/cameras/calibration_file.py``, beside the cameras that
read it) holds what a camera's pictures mean in metres: its pinhole
intrinsics and distortion at one resolution, and optionally where it sits on the robot
(``extrinsic``: the camera's pose in the gripper frame, eye-in-hand, or in the robot base
frame, eye-to-hand). Controller files name it in a view's ``calibration:`` key
(``robolearn/hal/cameras/config.py``); ``robolearn calibrate`` writes it.

This package computes calibrations and writes those files; it sits above the HAL and
imports its cameras, while the HAL never imports it. Submodules are imported one by one
(this file imports none), so ``robolearn calibrate`` loads MuJoCo only for ``--sim``.
"""
