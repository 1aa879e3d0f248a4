//! The end-to-end tests: real `gangway` processes on free loopback ports,
//! real TLS, real agent sessions and the official clients, in one test
//! binary (each area a module; shared setup in [`support`]).
// A test fails by panicking: unwrap and expect say where.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod agent_config;
mod agent_console;
mod agent_proxy;
mod agent_web;
mod api_client;
mod api_edges;
mod api_errors;
mod api_k8s_ingress;
mod api_l4_certs;
mod api_live;
mod bad_input;
mod file_server;
mod http_options;
mod http_tunnel;
mod mutual_tls;
mod route_modules;
mod sdk_compat;
mod tcp_tunnel;
mod tls_tunnel;
mod traffic_policy;
mod traffic_policy_actions;
mod webhooks;
mod websocket_tcp;
