"""Generated gRPC code lives beside the .proto files (see proto/generate.sh)."""
