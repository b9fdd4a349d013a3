"""Generated protobuf and gRPC code for the progress protos (see generate.py)."""
