"""Speech and video backends, chosen by name through ``registry``.

- ``speech.piper`` (local) and ``speech.elevenlabs`` implement
  ``avatarchat_avatar.speech.SpeechBackend``;
- ``video.local`` (the rig renderer) and ``video.did`` implement
  ``avatarchat_avatar.video.VideoBackend``.
"""
