"""Drawing the character: geometry, palette and the Pillow drawings of every layer."""
