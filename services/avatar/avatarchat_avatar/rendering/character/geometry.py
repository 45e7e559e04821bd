"""Where the character's parts sit, in canvas pixels (512 x 512, y down), at rest.

Drawing (face, body, mouths), the renderer and the browser manifest all read these numbers, so
the video and the browser rig line up exactly.
"""

from __future__ import annotations

CANVAS = (512, 512)
FPS = 25

# Head group: everything above the neck turns about the neck joint.
HEAD_BOX = (112, 4, 400, 344)
"""Left, top, right, bottom of the head base image (hair, ears, face)."""
NECK_PIVOT = (256.0, 318.0)
FACE_CENTER_X = 256.0

EYE_CENTERS = ((214.0, 212.0), (298.0, 212.0))
"""The character's right eye is on the viewer's left."""
EYES_BOX = (176, 176, 336, 248)
BROWS_BOX = (172, 140, 340, 182)
NOSE_CENTER = (256.0, 250.0)
MOUTH_ANCHOR = (256.0, 284.0)
"""Centre of the closed lips; mouth drawings open downwards from here."""
MOUTH_SIZE = (120, 84)
MOUTH_ANCHOR_IN_SPRITE = (60.0, 30.0)
CHEEK_CENTERS = ((194.0, 262.0), (318.0, 262.0))

# Body.
TORSO_BOX = (64, 288, 448, 512)
SHOULDERS = {"arm_r": (142.0, 398.0), "arm_l": (370.0, 398.0)}
"""Shoulder joints. ``arm_r`` is the character's right arm, on the viewer's left."""
UPPER_ARM_LENGTH = 108.0
FOREARM_LENGTH = 98.0
UPPER_ARM_WIDTH = 58.0
FOREARM_WIDTH = 48.0
REST_SHOULDER_DEG = {"arm_r": 12.0, "arm_l": -12.0}
"""Angle of the hanging upper arm: 0 points straight down, positive turns clockwise."""
REST_ELBOW_DEG = {"arm_r": -6.0, "arm_l": 6.0}
"""Forearm angle relative to the upper arm at rest."""
HAND_SIZE = (84, 100)
HAND_WRIST_IN_SPRITE = (42.0, 10.0)
"""Hands are drawn fingers down, wrist at the top centre; rotation follows the forearm."""
