//! The network's nftables rules, in a table of its own (`inet <table>`, default `peapod`): egress
//! masquerade and the pods' hostPort DNAT. Nothing outside that table is ever read or changed.
//!
//! ```text
//! table inet peapod {
//!   chain prerouting  { type nat hook prerouting priority dstnat;  fib daddr type local jump hostports }
//!   chain output      { type nat hook output priority dstnat;      fib daddr type local jump hostports }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!     iifname BR oifname != BR masquerade                            # pods → elsewhere
//!     jump hairpin
//!     ct status dnat iifname BR oifname BR masquerade                # a pod to another's hostPort
//!     meta nfproto ipv4 oifname BR ip saddr 127.0.0.0/8 masquerade   # host's 127.0.0.1:hostPort
//!   }
//!   chain hostports {                                                # per pod, port and family
//!     meta nfproto ipv4 meta l4proto tcp [ip daddr HOSTIP] th dport 8080 dnat ip to 10.88.0.2:80 comment "peapod POD tcp * 8080 80"
//!   }
//!   chain hairpin {                                                  # per pod with host ports and family
//!     meta nfproto ipv4 ct status dnat ip saddr 10.88.0.2 ip daddr 10.88.0.2 snat ip to 10.88.0.1 comment "peapod POD"
//!   }
//! }
//! ```
//!
//! The base rules do not name the pod CIDRs (the bridge names the pods), so a CIDR change needs
//! no rule change. Localhost DNAT works because the bridge has route_localnet set. A pod
//! reaching its own hostPort is matched by address, not by interface: with br_netfilter loaded
//! (bridge-nf-call-iptables) such a packet is DNATed while it is still being bridged and is
//! bridged back out of its port instead of routed, so it never passes postrouting as going out
//! of the bridge; its source is set to the gateway, or the pod would drop a packet from its own
//! address. Each pod rule carries its pod (and mapping) in its comment: that is how a pod's
//! rules are found for teardown and how a port conflict is seen, from the kernel's state, with
//! nothing kept on the side.
//!
//! The rules are [`Rule`] values (pure, printed in nft's syntax for logs and tests) encoded to
//! nf_tables netlink expressions here and sent as one atomic batch per change through the
//! netfilter socket: no `nft` process is ever run.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_DUMP,
};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions,
    Hook, HookNumber, Immediate, InetHookNumber, ListAttribute, Meta, MetaKey, NfTablesMessage,
    Operator, Payload, Register, RuleAttribute, RuleMessage, TableAttribute, TableMessage, Verdict,
    VerdictAttribute,
};
use netlink_packet_netfilter::{
    none::ControlMessage, NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};

use super::error::KernelError;
use super::netlink::{attrs, Batch, Expect, NlSocket};
use super::ports::{tag, HostPort, Proto};

pub(crate) const HOSTPORTS: &str = "hostports";
pub(crate) const HAIRPIN: &str = "hairpin";
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NF_ACCEPT: u32 = 1;

/// The base chains: name, hook, priority.
const BASE_CHAINS: [(&str, InetHookNumber, i32); 3] = [
    ("prerouting", InetHookNumber::PreRouting, -100),
    ("output", InetHookNumber::LocalOut, -100),
    ("postrouting", InetHookNumber::PostRouting, 100),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Match {
    /// meta nfproto ipv4|ipv6 (true for IPv6)
    Nfproto(bool),
    L4proto(Proto),
    /// th dport
    Dport(u16),
    /// ip daddr / ip6 daddr
    Daddr(IpAddr),
    /// ip saddr NET / ip6 saddr NET
    Saddr(IpNet),
    Iifname(String, bool),
    Oifname(String, bool),
    /// fib daddr type local
    FibDaddrLocal,
    /// ct status dnat
    CtStatusDnat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Jump(&'static str),
    Masquerade,
    Dnat(SocketAddr),
    Snat(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub chain: &'static str,
    pub matches: Vec<Match>,
    pub action: Action,
    pub comment: Option<String>,
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ne = |eq: &bool| if *eq { "" } else { "!= " };
        match self {
            Match::Nfproto(v6) => write!(f, "meta nfproto {}", if *v6 { "ipv6" } else { "ipv4" }),
            Match::L4proto(p) => write!(f, "meta l4proto {p}"),
            Match::Dport(p) => write!(f, "th dport {p}"),
            Match::Daddr(IpAddr::V4(a)) => write!(f, "ip daddr {a}"),
            Match::Daddr(IpAddr::V6(a)) => write!(f, "ip6 daddr {a}"),
            Match::Saddr(n) => {
                let fam = if n.addr().is_ipv6() { "ip6" } else { "ip" };
                if n.prefix_len() == n.max_prefix_len() {
                    write!(f, "{fam} saddr {}", n.addr())
                } else {
                    write!(f, "{fam} saddr {n}")
                }
            }
            Match::Iifname(n, eq) => write!(f, "iifname {}\"{n}\"", ne(eq)),
            Match::Oifname(n, eq) => write!(f, "oifname {}\"{n}\"", ne(eq)),
            Match::FibDaddrLocal => f.write_str("fib daddr type local"),
            Match::CtStatusDnat => f.write_str("ct status dnat"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        match &self.action {
            Action::Jump(c) => write!(f, "jump {c}")?,
            Action::Masquerade => f.write_str("masquerade")?,
            Action::Dnat(SocketAddr::V4(a)) => write!(f, "dnat ip to {a}")?,
            Action::Dnat(SocketAddr::V6(a)) => write!(f, "dnat ip6 to {a}")?,
            Action::Snat(IpAddr::V4(a)) => write!(f, "snat ip to {a}")?,
            Action::Snat(IpAddr::V6(a)) => write!(f, "snat ip6 to {a}")?,
        }
        if let Some(c) = &self.comment {
            write!(f, " comment \"{c}\"")?;
        }
        Ok(())
    }
}

/// The rules of the base chains for bridge `bridge`.
pub(crate) fn base_rules(bridge: &str) -> Vec<Rule> {
    let br = || bridge.to_string();
    let localhost = IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).unwrap();
    let mut v = Vec::new();
    for chain in ["prerouting", "output"] {
        v.push(Rule {
            chain,
            matches: vec![Match::FibDaddrLocal],
            action: Action::Jump(HOSTPORTS),
            comment: None,
        });
    }
    let masq = |matches| Rule {
        chain: "postrouting",
        matches,
        action: Action::Masquerade,
        comment: None,
    };
    v.push(masq(vec![
        Match::Iifname(br(), true),
        Match::Oifname(br(), false),
    ]));
    v.push(Rule {
        chain: "postrouting",
        matches: vec![],
        action: Action::Jump(HAIRPIN),
        comment: None,
    });
    v.push(masq(vec![
        Match::CtStatusDnat,
        Match::Iifname(br(), true),
        Match::Oifname(br(), true),
    ]));
    v.push(masq(vec![
        Match::Nfproto(false),
        Match::Oifname(br(), true),
        Match::Saddr(localhost),
    ]));
    v
}

/// The rules of one pod: DNAT of each host port to each of the pod's addresses whose family
/// the mapping covers, and for each such address the hairpin SNAT to its gateway (`ips` pairs
/// each address with the gateway of its CIDR; without one the hairpin masquerades). A mapping
/// no address of the pod can serve (an IPv6 host_ip for a pod with IPv4 only) is the error.
pub(crate) fn pod_rules(
    pod: &str,
    ips: &[(IpAddr, Option<IpAddr>)],
    ports: &[HostPort],
) -> Result<Vec<Rule>, HostPort> {
    let mut v = Vec::new();
    let mut hairpin: Vec<(IpAddr, Option<IpAddr>)> = Vec::new();
    for hp in ports {
        let before = v.len();
        for (ip, gw) in ips {
            let v6 = ip.is_ipv6();
            if !hp.covers_family(v6) {
                continue;
            }
            let mut matches = vec![Match::Nfproto(v6), Match::L4proto(hp.proto)];
            if let Some(h) = hp.host_ip.filter(|h| !h.is_unspecified()) {
                matches.push(Match::Daddr(h));
            }
            matches.push(Match::Dport(hp.host_port));
            v.push(Rule {
                chain: HOSTPORTS,
                matches,
                action: Action::Dnat(SocketAddr::new(*ip, hp.container_port)),
                comment: Some(tag(pod, hp)),
            });
            if !hairpin.iter().any(|(i, _)| i == ip) {
                hairpin.push((*ip, *gw));
            }
        }
        if v.len() == before {
            return Err(*hp);
        }
    }
    for (ip, gw) in hairpin {
        v.push(Rule {
            chain: HAIRPIN,
            matches: vec![
                Match::Nfproto(ip.is_ipv6()),
                Match::CtStatusDnat,
                Match::Saddr(IpNet::from(ip)),
                Match::Daddr(ip),
            ],
            action: gw.map_or(Action::Masquerade, Action::Snat),
            comment: Some(pod_tag(pod)),
        });
    }
    Ok(v)
}

/// The comment of a pod's rules that map no port (its hairpin rules).
pub(crate) fn pod_tag(pod: &str) -> String {
    format!("peapod {pod}")
}

/// The pod a rule comment names, for either kind of pod rule.
pub(crate) fn tag_pod(comment: &str) -> Option<&str> {
    let mut f = comment.split(' ');
    (f.next()? == "peapod").then_some(())?;
    f.next()
}

// ---- encoding -------------------------------------------------------------------------

const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CT_STATUS: u32 = 2;
const IPS_DST_NAT: u32 = 1 << 5;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;
const NFT_NAT_SNAT: u32 = 0;
const NFT_NAT_DNAT: u32 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IFNAMSIZ: usize = 16;
/// The comment type of nft's rule user data (NFTNL_UDATA_RULE_COMMENT).
const UDATA_RULE_COMMENT: u8 = 0;

type Expr = ListAttribute<ExpressionAttribute>;

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn other(name: &str, a: Vec<(u16, Vec<u8>)>) -> Expr {
    Expressions::Other {
        expression_type: name.to_string(),
        attributes: a.into_iter().map(|(k, v)| DefaultNla::new(k, v)).collect(),
    }
    .into()
}

fn meta(key: MetaKey) -> Expr {
    Expressions::Meta(vec![
        Meta::DestinationRegister(Register::Reg1),
        Meta::Key(key),
    ])
    .into()
}

fn cmp(op: Operator, data: Vec<u8>) -> Expr {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ])
    .into()
}

fn payload(base: u32, offset: u32, len: u32) -> Expr {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

fn mask(m: Vec<u8>) -> Expr {
    let len = m.len() as u32;
    Expressions::Bitwise(vec![
        Bitwise::SourceRegister(Register::Reg1),
        Bitwise::DestinationRegister(Register::Reg1),
        Bitwise::Length(len),
        Bitwise::Mask(DataAttribute::Value(m)),
        Bitwise::Xor(DataAttribute::Value(vec![0; len as usize])),
    ])
    .into()
}

fn ifname(name: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.resize(IFNAMSIZ, 0);
    b
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn eq_op(eq: bool) -> Operator {
    if eq {
        Operator::Equal
    } else {
        Operator::NotEqual
    }
}

/// The nf_tables expressions of a rule, as nft itself would emit them.
pub(crate) fn encode(rule: &Rule) -> Vec<Expr> {
    let mut e = Vec::new();
    for m in &rule.matches {
        match m {
            Match::Nfproto(v6) => {
                e.push(meta(MetaKey::Nfproto));
                e.push(cmp(
                    Operator::Equal,
                    vec![if *v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }],
                ));
            }
            Match::L4proto(p) => {
                e.push(meta(MetaKey::L4Proto));
                e.push(cmp(Operator::Equal, vec![p.number()]));
            }
            Match::Dport(p) => {
                e.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
                e.push(cmp(Operator::Equal, p.to_be_bytes().to_vec()));
            }
            Match::Daddr(ip) => {
                let (off, len) = if ip.is_ipv6() { (24, 16) } else { (16, 4) };
                e.push(payload(NFT_PAYLOAD_NETWORK_HEADER, off, len));
                e.push(cmp(Operator::Equal, ip_bytes(*ip)));
            }
            Match::Saddr(n) => {
                let (off, len) = if n.addr().is_ipv6() { (8, 16) } else { (12, 4) };
                e.push(payload(NFT_PAYLOAD_NETWORK_HEADER, off, len));
                if n.prefix_len() != n.max_prefix_len() {
                    e.push(mask(ip_bytes(n.netmask())));
                }
                e.push(cmp(Operator::Equal, ip_bytes(n.network())));
            }
            Match::Iifname(n, eq) => {
                e.push(meta(MetaKey::Iifname));
                e.push(cmp(eq_op(*eq), ifname(n)));
            }
            Match::Oifname(n, eq) => {
                e.push(meta(MetaKey::Oifname));
                e.push(cmp(eq_op(*eq), ifname(n)));
            }
            Match::FibDaddrLocal => {
                e.push(other(
                    "fib",
                    vec![
                        (1, be32(Register::Reg1.into())),   // NFTA_FIB_DREG
                        (2, be32(NFT_FIB_RESULT_ADDRTYPE)), // NFTA_FIB_RESULT
                        (3, be32(NFTA_FIB_F_DADDR)),        // NFTA_FIB_FLAGS
                    ],
                ));
                e.push(cmp(Operator::Equal, RTN_LOCAL.to_ne_bytes().to_vec()));
            }
            Match::CtStatusDnat => {
                e.push(other(
                    "ct",
                    vec![
                        (1, be32(Register::Reg1.into())), // NFTA_CT_DREG
                        (2, be32(NFT_CT_STATUS)),         // NFTA_CT_KEY
                    ],
                ));
                e.push(mask(IPS_DST_NAT.to_ne_bytes().to_vec()));
                e.push(cmp(Operator::NotEqual, vec![0; 4]));
            }
        }
    }
    match &rule.action {
        Action::Jump(chain) => e.push(
            Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Verdict),
                Immediate::Data(DataAttribute::Verdict(vec![
                    VerdictAttribute::Code(Verdict::Jump),
                    VerdictAttribute::Chain(chain.to_string()),
                ])),
            ])
            .into(),
        ),
        Action::Masquerade => e.push(other("masq", vec![])),
        Action::Snat(ip) => {
            e.push(
                Expressions::Immediate(vec![
                    Immediate::DestinationRegister(Register::Reg1),
                    Immediate::Data(DataAttribute::Value(ip_bytes(*ip))),
                ])
                .into(),
            );
            let family = if ip.is_ipv6() {
                NFPROTO_IPV6
            } else {
                NFPROTO_IPV4
            };
            e.push(other(
                "nat",
                vec![
                    (1, be32(NFT_NAT_SNAT)),          // NFTA_NAT_TYPE
                    (2, be32(family as u32)),         // NFTA_NAT_FAMILY
                    (3, be32(Register::Reg1.into())), // NFTA_NAT_REG_ADDR_MIN
                ],
            ));
        }
        Action::Dnat(sa) => {
            e.push(
                Expressions::Immediate(vec![
                    Immediate::DestinationRegister(Register::Reg1),
                    Immediate::Data(DataAttribute::Value(ip_bytes(sa.ip()))),
                ])
                .into(),
            );
            e.push(
                Expressions::Immediate(vec![
                    Immediate::DestinationRegister(Register::Reg2),
                    Immediate::Data(DataAttribute::Value(sa.port().to_be_bytes().to_vec())),
                ])
                .into(),
            );
            let family = if sa.is_ipv6() {
                NFPROTO_IPV6
            } else {
                NFPROTO_IPV4
            };
            e.push(other(
                "nat",
                vec![
                    (1, be32(NFT_NAT_DNAT)),          // NFTA_NAT_TYPE
                    (2, be32(family as u32)),         // NFTA_NAT_FAMILY
                    (3, be32(Register::Reg1.into())), // NFTA_NAT_REG_ADDR_MIN
                    (5, be32(Register::Reg2.into())), // NFTA_NAT_REG_PROTO_MIN
                ],
            ));
        }
    }
    e
}

/// A comment as nft stores it in a rule's user data (so `nft list` shows it).
pub(crate) fn comment_udata(c: &str) -> Vec<u8> {
    let bytes = c.as_bytes();
    let n = bytes.len().min(254);
    let mut v = vec![UDATA_RULE_COMMENT, (n + 1) as u8];
    v.extend_from_slice(&bytes[..n]);
    v.push(0);
    v
}

fn udata_comment(u: &[u8]) -> Option<String> {
    let mut off = 0;
    while off + 2 <= u.len() {
        let (kind, len) = (u[off], u[off + 1] as usize);
        let v = u.get(off + 2..off + 2 + len)?;
        if kind == UDATA_RULE_COMMENT {
            let s = v.split(|b| *b == 0).next().unwrap_or(v);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        off += 2 + len;
    }
    None
}

// ---- requests -------------------------------------------------------------------------

/// One rule found in the hostports chain.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub handle: u64,
    pub comment: Option<String>,
}

/// The table of one network: its name and the bridge its rules name.
pub(crate) struct Nft {
    pub table: String,
    pub bridge: String,
}

fn nfmsg(family: NetfilterProtoFamily, m: NfTablesMessage) -> NetlinkMessage<NetfilterMessage> {
    NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), m)),
    )
}

fn delimiter(m: ControlMessage) -> NetlinkMessage<NetfilterMessage> {
    NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            m,
        )),
    )
}

/// An nf_tables transaction: everything pushed between begin and commit is applied by the
/// kernel atomically, or not at all.
pub(crate) struct Txn<'a> {
    sock: &'a mut NlSocket,
    batch: Batch,
    what: Vec<String>,
}

const INET: NetfilterProtoFamily = NetfilterProtoFamily::Inet;

impl<'a> Txn<'a> {
    pub(crate) fn begin(sock: &'a mut NlSocket) -> Self {
        let mut batch = Batch::default();
        batch.push(sock, delimiter(ControlMessage::BatchBegin), 0, None);
        Txn {
            sock,
            batch,
            what: Vec::new(),
        }
    }

    fn push(&mut self, m: NfTablesMessage, flags: u16, what: String) {
        self.batch.push(
            self.sock,
            nfmsg(INET, m),
            flags | NLM_F_ACK,
            Some(Expect::Ack),
        );
        self.what.push(what);
    }

    pub(crate) fn add_table(&mut self, table: &str) {
        self.push(
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![TableAttribute::Name(table.into())],
            }),
            NLM_F_CREATE,
            format!("adding table inet {table}"),
        );
    }

    pub(crate) fn delete_table(&mut self, table: &str) {
        self.push(
            NfTablesMessage::DeleteTable(TableMessage {
                attributes: vec![TableAttribute::Name(table.into())],
            }),
            0,
            format!("deleting table inet {table}"),
        );
    }

    /// Adds (or keeps) a chain; a base chain with its hook.
    pub(crate) fn add_chain(
        &mut self,
        table: &str,
        name: &str,
        hook: Option<(InetHookNumber, i32)>,
    ) {
        let mut a = vec![
            ChainAttribute::Table(table.into()),
            ChainAttribute::Name(name.into()),
        ];
        if let Some((num, prio)) = hook {
            a.push(ChainAttribute::Hook(vec![
                Hook::Number(HookNumber::Inet(num)),
                Hook::Priority(prio as u32),
            ]));
            a.push(ChainAttribute::Policy(NF_ACCEPT));
            a.push(ChainAttribute::Type("nat".into()));
        }
        self.push(
            NfTablesMessage::NewChain(ChainMessage { attributes: a }),
            NLM_F_CREATE,
            format!("adding chain {name} to table inet {table}"),
        );
    }

    /// Deletes every rule of a chain.
    pub(crate) fn flush_chain(&mut self, table: &str, chain: &str) {
        self.push(
            NfTablesMessage::DeleteRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.into()),
                    RuleAttribute::Chain(chain.into()),
                ],
            }),
            0,
            format!("flushing chain {chain} of table inet {table}"),
        );
    }

    pub(crate) fn add_rule(&mut self, table: &str, rule: &Rule) {
        let mut a = vec![
            RuleAttribute::Table(table.into()),
            RuleAttribute::Chain(rule.chain.into()),
            RuleAttribute::Expressions(encode(rule)),
        ];
        if let Some(c) = &rule.comment {
            a.push(RuleAttribute::UserData(comment_udata(c)));
        }
        self.push(
            NfTablesMessage::NewRule(RuleMessage { attributes: a }),
            NLM_F_CREATE | NLM_F_APPEND,
            format!(
                "adding rule `{rule}` to chain {} of table inet {table}",
                rule.chain
            ),
        );
    }

    pub(crate) fn delete_rule(&mut self, table: &str, chain: &str, handle: u64) {
        self.push(
            NfTablesMessage::DeleteRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.into()),
                    RuleAttribute::Chain(chain.into()),
                    RuleAttribute::Handle(handle),
                ],
            }),
            0,
            format!("deleting rule {handle} of chain {chain} of table inet {table}"),
        );
    }

    /// Sends the transaction; the error names the first request the kernel refused.
    pub(crate) fn commit(self) -> Result<(), (String, KernelError)> {
        let Txn {
            sock,
            mut batch,
            what,
        } = self;
        if batch.is_empty() {
            return Ok(());
        }
        batch.push(sock, delimiter(ControlMessage::BatchEnd), 0, None);
        let replies = sock
            .exchange(batch)
            .map_err(|e| ("nf_tables transaction".to_string(), e))?;
        // The first real error; "not applied" follow-ups only if nothing else is known.
        let mut cancelled = None;
        for (r, w) in replies.into_iter().zip(what) {
            if let Err(e) = r {
                if e.is(libc::ECANCELED) {
                    cancelled.get_or_insert((w, e));
                } else {
                    return Err((w, e));
                }
            }
        }
        cancelled.map_or(Ok(()), Err)
    }
}

impl Nft {
    /// The table's skeleton, pushed into `t`: the table, its chains and the base rules
    /// (replacing those there; the hostports chain is left as it is).
    pub(crate) fn push_skeleton(&self, t: &mut Txn<'_>) {
        t.add_table(&self.table);
        for (name, hook, prio) in BASE_CHAINS {
            t.add_chain(&self.table, name, Some((hook, prio)));
        }
        t.add_chain(&self.table, HOSTPORTS, None);
        t.add_chain(&self.table, HAIRPIN, None);
        for (name, _, _) in BASE_CHAINS {
            t.flush_chain(&self.table, name);
        }
        for r in base_rules(&self.bridge) {
            t.add_rule(&self.table, &r);
        }
    }

    /// Whether the table and its hostports chain exist.
    pub(crate) fn chain_exists(&self, sock: &mut NlSocket) -> Result<bool, KernelError> {
        let mut b = Batch::default();
        b.push(
            sock,
            nfmsg(
                INET,
                NfTablesMessage::GetChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table(self.table.clone()),
                        ChainAttribute::Name(HOSTPORTS.into()),
                    ],
                }),
            ),
            NLM_F_ACK,
            Some(Expect::Ack),
        );
        match sock.exchange(b)?.pop().unwrap() {
            Ok(_) => Ok(true),
            Err(e) if e.is(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The rules of one of the pods' chains. A missing table or chain is an empty list.
    pub(crate) fn list_chain(
        &self,
        sock: &mut NlSocket,
        chain: &'static str,
    ) -> Result<Vec<Listed>, KernelError> {
        let mut b = Batch::default();
        b.push(
            sock,
            nfmsg(
                INET,
                NfTablesMessage::GetRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table(self.table.clone()),
                        RuleAttribute::Chain(chain.into()),
                    ],
                }),
            ),
            NLM_F_DUMP,
            Some(Expect::Dump),
        );
        let msgs = match sock.exchange(b)?.pop().unwrap() {
            Ok(m) => m,
            Err(e) if e.is(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for m in msgs {
            // nlmsghdr (16) + nfgenmsg (4), then the rule's attributes.
            let Some(body) = m.get(20..) else { continue };
            let mut handle = None;
            let mut comment = None;
            for (kind, v) in attrs(body) {
                match kind {
                    3 if v.len() == 8 => handle = Some(u64::from_be_bytes(v.try_into().unwrap())), // NFTA_RULE_HANDLE
                    7 => comment = udata_comment(v), // NFTA_RULE_USERDATA
                    _ => {}
                }
            }
            if let Some(handle) = handle {
                out.push(Listed { handle, comment });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(proto: Proto, host_ip: Option<&str>, host_port: u16, container_port: u16) -> HostPort {
        HostPort {
            proto,
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port,
            container_port,
        }
    }

    #[test]
    fn base_rules_masquerade_egress_hairpin_and_localhost() {
        let got: Vec<String> = base_rules("pp0")
            .iter()
            .map(|r| format!("{}: {r}", r.chain))
            .collect();
        assert_eq!(
            got,
            vec![
                "prerouting: fib daddr type local jump hostports",
                "output: fib daddr type local jump hostports",
                "postrouting: iifname \"pp0\" oifname != \"pp0\" masquerade",
                "postrouting: jump hairpin",
                "postrouting: ct status dnat iifname \"pp0\" oifname \"pp0\" masquerade",
                "postrouting: meta nfproto ipv4 oifname \"pp0\" ip saddr 127.0.0.0/8 masquerade",
            ]
        );
    }

    #[test]
    fn pod_rules_cover_each_family_the_mapping_asks_for() {
        let ips: Vec<(IpAddr, Option<IpAddr>)> = vec![
            (
                "10.88.0.2".parse().unwrap(),
                Some("10.88.0.1".parse().unwrap()),
            ),
            ("fd00::2".parse().unwrap(), None),
        ];
        let rules = pod_rules(
            "p1",
            &ips,
            &[
                hp(Proto::Tcp, None, 8080, 80),
                hp(Proto::Udp, Some("192.0.2.7"), 53, 5353),
                hp(Proto::Sctp, Some("::"), 9, 9),
            ],
        )
        .unwrap();
        let got: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "meta nfproto ipv4 meta l4proto tcp th dport 8080 dnat ip to 10.88.0.2:80 comment \"peapod p1 tcp * 8080 80\"",
                "meta nfproto ipv6 meta l4proto tcp th dport 8080 dnat ip6 to [fd00::2]:80 comment \"peapod p1 tcp * 8080 80\"",
                "meta nfproto ipv4 meta l4proto udp ip daddr 192.0.2.7 th dport 53 dnat ip to 10.88.0.2:5353 comment \"peapod p1 udp 192.0.2.7 53 5353\"",
                "meta nfproto ipv6 meta l4proto sctp th dport 9 dnat ip6 to [fd00::2]:9 comment \"peapod p1 sctp :: 9 9\"",
                "meta nfproto ipv4 ct status dnat ip saddr 10.88.0.2 ip daddr 10.88.0.2 snat ip to 10.88.0.1 comment \"peapod p1\"",
                "meta nfproto ipv6 ct status dnat ip6 saddr fd00::2 ip6 daddr fd00::2 masquerade comment \"peapod p1\"",
            ]
        );
        assert!(rules[..4].iter().all(|r| r.chain == HOSTPORTS));
        assert!(rules[4..].iter().all(|r| r.chain == HAIRPIN));
        assert_eq!(tag_pod("peapod p1 tcp * 8080 80"), Some("p1"));
        assert_eq!(tag_pod("peapod p1"), Some("p1"));
        assert_eq!(tag_pod("other p1"), None);
        // An IPv6 host address for a pod with IPv4 only cannot be served.
        let v6only = hp(Proto::Tcp, Some("fd00::9"), 80, 80);
        assert_eq!(pod_rules("p", &ips[..1], &[v6only]), Err(v6only));
        assert!(pod_rules("p", &ips, &[]).unwrap().is_empty());
    }

    #[test]
    fn comments_round_trip_through_user_data() {
        let u = comment_udata("peapod p tcp * 1 2");
        assert_eq!(&u[..2], &[0, 19]);
        assert_eq!(udata_comment(&u).as_deref(), Some("peapod p tcp * 1 2"));
        // Another TLV before the comment is skipped.
        let mut u2 = vec![5, 2, 9, 9];
        u2.extend_from_slice(&u);
        assert_eq!(udata_comment(&u2).as_deref(), Some("peapod p tcp * 1 2"));
        assert_eq!(udata_comment(&[1, 200]), None);
    }

    /// The encoding of one DNAT rule, checked against what `nft --debug=netlink` prints for
    /// `meta nfproto ipv4 meta l4proto tcp th dport 8080 dnat ip to 10.88.0.2:80`:
    /// meta load nfproto => reg 1; cmp eq reg 1 0x02; meta load l4proto => reg 1;
    /// cmp eq reg 1 0x06; payload load 2b @ transport header + 2 => reg 1; cmp eq reg 1 0x901f;
    /// immediate reg 1 0x0258580a; immediate reg 2 0x5000; nat dnat ip addr_min reg 1 proto_min reg 2
    #[test]
    fn dnat_rule_encodes_like_nft() {
        let r = &pod_rules(
            "p",
            &[("10.88.0.2".parse().unwrap(), None)],
            &[hp(Proto::Tcp, None, 8080, 80)],
        )
        .unwrap()[0];
        let e = encode(r);
        let names: Vec<String> = e
            .iter()
            .map(|x| match x {
                ListAttribute::Element(v) => v
                    .iter()
                    .find_map(|a| match a {
                        ExpressionAttribute::Name(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "meta",
                "cmp",
                "meta",
                "cmp",
                "payload",
                "cmp",
                "immediate",
                "immediate",
                "nat"
            ]
        );
        let data = |i: usize| match &e[i] {
            ListAttribute::Element(v) => v
                .iter()
                .find_map(|a| match a {
                    ExpressionAttribute::Data(d) => Some(d.clone()),
                    _ => None,
                })
                .unwrap(),
            _ => panic!(),
        };
        assert_eq!(
            data(5),
            Expressions::Cmp(vec![
                Cmp::SourceRegister(Register::Reg1),
                Cmp::Op(Operator::Equal),
                Cmp::Data(DataAttribute::Value(vec![0x1f, 0x90])),
            ])
        );
        assert_eq!(
            data(6),
            Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Reg1),
                Immediate::Data(DataAttribute::Value(vec![10, 88, 0, 2])),
            ])
        );
        match data(8) {
            Expressions::Other {
                expression_type,
                attributes,
            } => {
                assert_eq!(expression_type, "nat");
                let kv: Vec<(u16, Vec<u8>)> = attributes
                    .iter()
                    .map(|a| {
                        use netlink_packet_core::Nla;
                        let mut v = vec![0; a.value_len()];
                        a.emit_value(&mut v);
                        (a.kind(), v)
                    })
                    .collect();
                assert_eq!(
                    kv,
                    vec![
                        (1, vec![0, 0, 0, 1]),
                        (2, vec![0, 0, 0, 2]),
                        (3, vec![0, 0, 0, 1]),
                        (5, vec![0, 0, 0, 2]),
                    ]
                );
            }
            x => panic!("{x:?}"),
        }
    }
}
