"""avatarchat stt service: speech to text over gRPC (PocketSphinx locally, or Whisper on Groq)."""
