//! Servers on 127.0.0.1 that stand in for what a real registry cannot be made to do: a proxy
//! that injects faults into the traffic to a real registry (`fault_proxy`), a token service in
//! front of one (`token_front`), a login portal that answers everything with HTML
//! (`html_server`), and GitHub Actions' OIDC token endpoint (`oidc_token`). `http_wire` holds
//! the raw HTTP/1.1 pieces they share.

pub mod fault_proxy;
pub mod html_server;
pub mod http_wire;
pub mod oidc_token;
pub mod token_front;
