//! Typed rtnetlink requests: links (the bridge, the veth pair, up/down, bridge port options),
//! addresses and routes, encoded with netlink-packet-route and sent through [`NlSocket`].
//!
//! Builders only append to a [`Batch`]; the caller decides what goes in one datagram. Queries
//! (`get_link`, the dumps) do their own round trip.

use std::net::IpAddr;
use std::os::fd::RawFd;

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::error::KernelError;
use super::netlink::{Batch, Expect, NlSocket, Reply};

/// What the network needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: Option<u32>,
    /// The bridge (or other master) it is a port of.
    pub master: Option<u32>,
    pub up: bool,
}

/// A route of the host's routing tables, reduced to what the CIDR choice and the MTU need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub dst: IpNet,
    pub oif: Option<u32>,
    pub table: u32,
}

fn nl(m: RouteNetlinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
    NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(m))
}

fn parse(raw: &[u8]) -> Option<RouteNetlinkMessage> {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) {
        Ok(m) => match m.payload {
            NetlinkPayload::InnerMessage(i) => Some(i),
            _ => None,
        },
        Err(e) => {
            tracing::debug!(error = %e, "unparsed rtnetlink message");
            None
        }
    }
}

/// One request, one reply.
pub(crate) fn single(
    sock: &mut NlSocket,
    m: RouteNetlinkMessage,
    flags: u16,
    expect: Expect,
) -> Reply {
    let mut b = Batch::default();
    b.push(sock, nl(m), flags, Some(expect));
    sock.exchange(b)?.pop().unwrap()
}

fn link_of(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        mtu: None,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::Controller(v) => l.master = Some(*v),
            _ => {}
        }
    }
    l
}

fn links_of(msgs: Vec<Vec<u8>>) -> Vec<Link> {
    msgs.iter()
        .filter_map(|raw| match parse(raw)? {
            RouteNetlinkMessage::NewLink(m) => Some(link_of(&m)),
            _ => None,
        })
        .collect()
}

/// The link named `name`, or None when there is none.
pub(crate) fn get_link(sock: &mut NlSocket, name: &str) -> Result<Option<Link>, KernelError> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    match single(
        sock,
        RouteNetlinkMessage::GetLink(m),
        NLM_F_ACK,
        Expect::Ack,
    ) {
        Ok(msgs) => Ok(links_of(msgs).into_iter().next()),
        Err(e) if e.is(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn get_link_by_index(
    sock: &mut NlSocket,
    index: u32,
) -> Result<Option<Link>, KernelError> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    match single(
        sock,
        RouteNetlinkMessage::GetLink(m),
        NLM_F_ACK,
        Expect::Ack,
    ) {
        Ok(msgs) => Ok(links_of(msgs).into_iter().next()),
        Err(e) if e.is(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn dump_links(sock: &mut NlSocket) -> Result<Vec<Link>, KernelError> {
    let m = LinkMessage::default();
    single(
        sock,
        RouteNetlinkMessage::GetLink(m),
        NLM_F_DUMP,
        Expect::Dump,
    )
    .map(links_of)
}

/// The addresses (with their prefix) on link `index`.
pub(crate) fn dump_addrs(sock: &mut NlSocket, index: u32) -> Result<Vec<IpNet>, KernelError> {
    let m = AddressMessage::default();
    let msgs = single(
        sock,
        RouteNetlinkMessage::GetAddress(m),
        NLM_F_DUMP,
        Expect::Dump,
    )?;
    let mut out = Vec::new();
    for raw in &msgs {
        let Some(RouteNetlinkMessage::NewAddress(a)) = parse(raw) else {
            continue;
        };
        if a.header.index != index {
            continue;
        }
        let addr = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = addr {
            if let Ok(n) = IpNet::new(ip, a.header.prefix_len) {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// The unicast routes of `family` in every table but the local one.
pub(crate) fn dump_routes(sock: &mut NlSocket, v6: bool) -> Result<Vec<Route>, KernelError> {
    let mut m = RouteMessage::default();
    m.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let msgs = single(
        sock,
        RouteNetlinkMessage::GetRoute(m),
        NLM_F_DUMP,
        Expect::Dump,
    )?;
    let mut out = Vec::new();
    for raw in &msgs {
        let Some(RouteNetlinkMessage::NewRoute(r)) = parse(raw) else {
            continue;
        };
        if r.header.kind != RouteType::Unicast {
            continue;
        }
        let mut table = r.header.table as u32;
        let mut dst = None;
        let mut oif = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(IpAddr::V4(*ip)),
                RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = Some(IpAddr::V6(*ip)),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        if table == 255 {
            // RT_TABLE_LOCAL: the host's own addresses, not routes elsewhere
            continue;
        }
        let dst = dst.unwrap_or(if v6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        });
        if let Ok(dst) = IpNet::new(dst, r.header.destination_prefix_length) {
            out.push(Route { dst, oif, table });
        }
    }
    Ok(out)
}

/// Creates bridge `name`, up, with a fixed MAC (so the pods' gateway MAC does not change as
/// ports come and go) and the given MTU.
pub(crate) fn push_new_bridge(
    b: &mut Batch,
    sock: &mut NlSocket,
    name: &str,
    mtu: u32,
    mac: [u8; 6],
) {
    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m.attributes.push(LinkAttribute::Mtu(mtu));
    m.attributes.push(LinkAttribute::Address(mac.to_vec()));
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    b.push(
        sock,
        nl(RouteNetlinkMessage::NewLink(m)),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        Some(Expect::Ack),
    );
}

/// Sets link `index` (or, with index 0, the link named `name`) up.
pub(crate) fn push_set_up(b: &mut Batch, sock: &mut NlSocket, index: u32, name: Option<&str>) {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    if let Some(n) = name {
        m.attributes.push(LinkAttribute::IfName(n.to_string()));
    }
    b.push(
        sock,
        nl(RouteNetlinkMessage::SetLink(m)),
        NLM_F_ACK,
        Some(Expect::Ack),
    );
}

/// Creates the veth pair of a pod in one request: `host` up as a port of bridge `master`, its
/// peer made straight in the network namespace `netns_fd` under the name `peer` (so no name
/// is ever taken on the host, and there is no rename).
pub(crate) fn push_new_veth(
    b: &mut Batch,
    sock: &mut NlSocket,
    host: &str,
    peer: &str,
    master: u32,
    mtu: u32,
    netns_fd: RawFd,
) {
    let mut p = LinkMessage::default();
    // Not up here: a veth cannot open before its pair is complete (ENOTCONN); the pod side
    // sets it up.
    p.attributes.push(LinkAttribute::IfName(peer.to_string()));
    p.attributes.push(LinkAttribute::Mtu(mtu));
    p.attributes.push(LinkAttribute::NetNsFd(netns_fd));
    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::IfName(host.to_string()));
    m.attributes.push(LinkAttribute::Mtu(mtu));
    m.attributes.push(LinkAttribute::Controller(master));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    b.push(
        sock,
        nl(RouteNetlinkMessage::NewLink(m)),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        Some(Expect::Ack),
    );
}

/// Turns on hairpin mode of bridge port `name`, so a pod's packets DNATed back to itself
/// (its own hostPort) can leave through the port they came in by.
pub(crate) fn push_hairpin(b: &mut Batch, sock: &mut NlSocket, name: &str) {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            true,
        )])),
    ]));
    b.push(
        sock,
        nl(RouteNetlinkMessage::NewLink(m)),
        NLM_F_ACK,
        Some(Expect::Ack),
    );
}

pub(crate) fn push_del_link(b: &mut Batch, sock: &mut NlSocket, name: &str) {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    b.push(
        sock,
        nl(RouteNetlinkMessage::DelLink(m)),
        NLM_F_ACK,
        Some(Expect::Ack),
    );
}

/// Adds `addr` (with the prefix of `net`) to link `index`; IPv6 addresses skip duplicate
/// address detection, which would keep them unusable for a second or more.
pub(crate) fn push_add_addr(b: &mut Batch, sock: &mut NlSocket, index: u32, addr: IpNet) {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = addr.prefix_len();
    m.header.scope = AddressScope::Universe;
    let ip = addr.addr();
    match ip {
        IpAddr::V4(v4) => {
            m.header.family = AddressFamily::Inet;
            m.attributes.push(AddressAttribute::Local(ip));
            m.attributes.push(AddressAttribute::Address(ip));
            if let IpNet::V4(n) = addr {
                if n.prefix_len() < 31 {
                    m.attributes
                        .push(AddressAttribute::Broadcast(n.broadcast()));
                }
            }
            let _ = v4;
        }
        IpAddr::V6(_) => {
            m.header.family = AddressFamily::Inet6;
            m.header.flags = AddressHeaderFlags::Nodad;
            m.attributes.push(AddressAttribute::Address(ip));
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    b.push(
        sock,
        nl(RouteNetlinkMessage::NewAddress(m)),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        Some(Expect::Ack),
    );
}

/// Adds the default route via `gw` on link `oif`.
pub(crate) fn push_default_route(b: &mut Batch, sock: &mut NlSocket, oif: u32, gw: IpAddr) {
    let mut m = RouteMessage::default();
    m.header.address_family = match gw {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = RouteScope::Universe;
    m.header.kind = RouteType::Unicast;
    m.attributes.push(RouteAttribute::Gateway(match gw {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }));
    m.attributes.push(RouteAttribute::Oif(oif));
    b.push(
        sock,
        nl(RouteNetlinkMessage::NewRoute(m)),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        Some(Expect::Ack),
    );
}
