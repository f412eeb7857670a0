//! The client's IP: the socket peer, or what `X-Forwarded-For` says when the peer is a trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;
use pingora::http::RequestHeader;

/// Walk `X-Forwarded-For` from the right (the hop nearest to us), skipping trusted proxies; the
/// first untrusted address is the client. Addresses a client writes at the left end are never
/// reached unless every proxy after them is trusted, so they cannot be spoofed through us.
pub fn client_ip(peer: IpAddr, req: &RequestHeader, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    // Later header lines are nearer to us than earlier ones.
    let values: Vec<&str> = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Some(ip) = parse_hop(hop) else {
            // An unreadable hop ends the chain: trust stops at the last address we could read.
            return client;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            return ip;
        }
    }
    client
}

/// Whether `ip` is one of the configured proxies (IPv4-mapped IPv6 counts as IPv4).
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    // "1.2.3.4:5678" or "[::1]:5678"
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xff: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for v in xff {
            r.append_header("x-forwarded-for", *v).unwrap();
        }
        r
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(peer, &req(&["1.1.1.1"]), &[]), peer);
        assert_eq!(
            client_ip(peer, &req(&["1.1.1.1"]), &nets(&["10.0.0.0/8"])),
            peer
        );
    }

    #[test]
    fn trusted_peer_forwards_the_nearest_untrusted_hop() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(peer, &req(&["198.51.100.7"]), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // The client prepended a fake address; the proxy appended the real one.
        let r = req(&["6.6.6.6, 198.51.100.7, 10.0.0.5"]);
        assert_eq!(
            client_ip(peer, &r, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let split = req(&["6.6.6.6", "198.51.100.7"]);
        assert_eq!(
            client_ip(peer, &split, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let r = req(&["198.51.100.7, garbage"]);
        assert_eq!(client_ip(peer, &r, &nets(&["10.0.0.0/8"])), peer);
    }

    #[test]
    fn no_header_means_peer() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(client_ip(peer, &req(&[]), &nets(&["10.0.0.0/8"])), peer);
    }
}
