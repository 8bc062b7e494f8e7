"""Video decoding and mouth extraction (OpenCV, dlib); no MXNet."""
