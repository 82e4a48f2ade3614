//! The simulated API server: HTTP routing and content negotiation (`http`), the
//! object store with watches and garbage collection ([`store`] and its `gc`), server-side
//! apply and strategic merge ([`ssa`], `smp`), validation and defaulting, the
//! OpenAPI and protobuf encodings, and kubectl's table printers.

pub mod api_error;
pub mod defaults;
pub(crate) mod http;
pub(crate) mod jsonpath;
pub mod kinds;
pub(crate) mod openapi;
pub(crate) mod openapi_v2;
pub(crate) mod printers;
pub(crate) mod proto_encode;
pub(crate) mod proto_schema;
pub(crate) mod protobuf;
pub(crate) mod reviews;
pub(crate) mod smp;
pub mod ssa;
pub mod store;
pub(crate) mod table;
pub mod validate;
pub(crate) mod versions;
