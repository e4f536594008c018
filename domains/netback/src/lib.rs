//! The network driver domain.
//!
//! This crate will own the netif backend (`io/netif.h`, Xen 4.17): the
//! xenbus handshake with netfront, the TX/RX rings over grants, the switch
//! between VIFs and the uplink to the host network.
#![no_std]
#![forbid(unsafe_code)]
