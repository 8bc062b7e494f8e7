"""Tests of text, decoders, language models, captions, timings (utils/text/)."""
