"""Perception: camera frames in, the ``object`` observation out, in the arm frame.

``ObjectPoseEstimator`` (``base``) turns a frame and its ``CameraView`` into a pose estimate or
a reason there is none: ``GroundTruth`` reads the simulator, ``MarkerEstimator`` finds ArUco
markers (``cv2.aruco``) and solves their pose. ``layouts`` writes a pose as a task's ``object``
vector (robosuite's layout), ``lost`` bounds how long a missed object's last pose may be used,
``sim_markers`` puts markers and a camera into a robosuite scene, and ``episode`` runs a task's
episodes with ``object`` perceived. Submodules are imported one by one (this file imports none),
so reading a config does not load OpenCV or MuJoCo.
"""
