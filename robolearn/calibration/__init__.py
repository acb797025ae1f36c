"""Camera calibration: ChArUco boards, intrinsics, hand-eye extrinsics and the calibration file.

A calibration file (``file.py``) holds what a camera's pictures mean in metres: its pinhole
intrinsics and distortion at one resolution, and optionally where it sits on the robot
(``extrinsic``: the camera's pose in the gripper frame, eye-in-hand, or in the robot base
frame, eye-to-hand). Controller files name it in a view's ``calibration:`` key
(``robolearn/hal/cameras/config.py``); ``robolearn calibrate`` writes it.

Submodules are imported one by one (this file imports none), so the HAL's camera config can
read a calibration file without loading OpenCV's calibration code or MuJoCo.
"""
