"""The local renderer: the character rig, its motion, the compositor and the MP4 encoder.

- ``character``: the drawings; ``rig``: the layers drawn once, and their export for browsers;
- ``motion``: the pose at any time of a timeline; ``compositor`` and ``planes``: the frames;
- ``mp4``: a timeline and its speech to an H.264 + AAC MP4.
"""
