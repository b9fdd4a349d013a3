"""Generated protobuf and gRPC code of the WorkflowRunner service (see generate.py)."""
