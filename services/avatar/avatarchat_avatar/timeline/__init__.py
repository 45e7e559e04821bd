"""The clip timeline: visemes from the speech's timings, gestures from its words and tags.

- ``build``: the timeline of one clip (``build_timeline``), as clients receive it;
- ``lipsync``, ``graphemes``, ``words``: visemes and word timings from phonemes or characters;
- ``catalogue``, ``gesture_rules``, ``gestures``: gesture names, the rules, the planner;
- inline gesture tags are parsed by the shared ``avatarchat.inline_tags``;
- ``sync_quality``: measures of how well the mouth follows the audio.
"""
