"""Tests of video reading and mouth crops (utils/video/)."""
