/**
 * The .proto files next to this module, as text, so that they ship with the compiled code (dist/ holds
 * no .proto files). A test keeps the two in step.
 */
export const PROTO_FILES: Readonly<Record<string, string>> = {
  'envoy/config/core/v3/base.proto': `// The subset of envoy/config/core/v3/base.proto that the endpoint picker uses.
syntax = "proto3";

package envoy.config.core.v3;

import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";

message Metadata {
  map<string, google.protobuf.Struct> filter_metadata = 1;
}

message HeaderValue {
  string key = 1;
  string value = 2;
  bytes raw_value = 3;
}

message HeaderValueOption {
  enum HeaderAppendAction {
    APPEND_IF_EXISTS_OR_ADD = 0;
    ADD_IF_ABSENT = 1;
    OVERWRITE_IF_EXISTS_OR_ADD = 2;
    OVERWRITE_IF_EXISTS = 3;
  }
  HeaderValue header = 1;
  google.protobuf.BoolValue append = 2;
  HeaderAppendAction append_action = 3;
  bool keep_empty_value = 4;
}

message HeaderMap {
  repeated HeaderValue headers = 1;
}
`,
  'envoy/type/v3/http_status.proto': `// The subset of envoy/type/v3/http_status.proto that the endpoint picker uses.
syntax = "proto3";

package envoy.type.v3;

enum StatusCode {
  Empty = 0;
  Continue = 100;
  OK = 200;
  BadRequest = 400;
  Unauthorized = 401;
  Forbidden = 403;
  NotFound = 404;
  PreconditionFailed = 412;
  PayloadTooLarge = 413;
  TooManyRequests = 429;
  InternalServerError = 500;
  BadGateway = 502;
  ServiceUnavailable = 503;
  GatewayTimeout = 504;
}

message HttpStatus {
  StatusCode code = 1;
}
`,
  'envoy/service/ext_proc/v3/external_processor.proto': `// The subset of envoy/service/ext_proc/v3/external_processor.proto that the endpoint picker uses.
// Message names and field numbers are upstream's.
syntax = "proto3";

package envoy.service.ext_proc.v3;

import "envoy/config/core/v3/base.proto";
import "envoy/type/v3/http_status.proto";
import "google/protobuf/struct.proto";

service ExternalProcessor {
  rpc Process(stream ProcessingRequest) returns (stream ProcessingResponse);
}

message ProcessingRequest {
  oneof request {
    HttpHeaders request_headers = 2;
    HttpHeaders response_headers = 3;
    HttpBody request_body = 4;
    HttpBody response_body = 5;
    HttpTrailers request_trailers = 6;
    HttpTrailers response_trailers = 7;
  }
  envoy.config.core.v3.Metadata metadata_context = 8;
  bool observability_mode = 10;
}

message ProcessingResponse {
  oneof response {
    HeadersResponse request_headers = 1;
    HeadersResponse response_headers = 2;
    BodyResponse request_body = 3;
    BodyResponse response_body = 4;
    TrailersResponse request_trailers = 5;
    TrailersResponse response_trailers = 6;
    ImmediateResponse immediate_response = 7;
  }
  google.protobuf.Struct dynamic_metadata = 8;
}

message HttpHeaders {
  envoy.config.core.v3.HeaderMap headers = 1;
  bool end_of_stream = 3;
}

message HttpBody {
  bytes body = 1;
  bool end_of_stream = 2;
}

message HttpTrailers {
  envoy.config.core.v3.HeaderMap trailers = 1;
}

message HeadersResponse {
  CommonResponse response = 1;
}

message BodyResponse {
  CommonResponse response = 1;
}

message TrailersResponse {
  HeaderMutation header_mutation = 1;
}

message CommonResponse {
  enum ResponseStatus {
    CONTINUE = 0;
    CONTINUE_AND_REPLACE = 1;
  }
  ResponseStatus status = 1;
  HeaderMutation header_mutation = 2;
  BodyMutation body_mutation = 3;
  envoy.config.core.v3.HeaderMap trailers = 4;
  bool clear_route_cache = 5;
}

message HeaderMutation {
  repeated envoy.config.core.v3.HeaderValueOption set_headers = 1;
  repeated string remove_headers = 2;
}

message BodyMutation {
  oneof mutation {
    bytes body = 1;
    bool clear_body = 2;
    StreamedBodyResponse streamed_response = 3;
  }
}

message StreamedBodyResponse {
  bytes body = 1;
  bool end_of_stream = 2;
}

message ImmediateResponse {
  envoy.type.v3.HttpStatus status = 1;
  HeaderMutation headers = 2;
  string body = 3;
  string details = 5;
}
`,
  'grpc/health/v1/health.proto': `// grpc/health/v1/health.proto (Check and Watch).
syntax = "proto3";

package grpc.health.v1;

message HealthCheckRequest {
  string service = 1;
}

message HealthCheckResponse {
  enum ServingStatus {
    UNKNOWN = 0;
    SERVING = 1;
    NOT_SERVING = 2;
    SERVICE_UNKNOWN = 3;
  }
  ServingStatus status = 1;
}

service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
`,
};
