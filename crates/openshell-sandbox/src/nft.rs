//! nftables tables as data, sent to the kernel as one nfnetlink batch (applied
//! whole or not at all).
//!
//! Hand-written over `netlink-packet-netfilter`'s messages rather than taken from a
//! library: the Rust nftables libraries are GPL (`rustables`) or bind libnftnl (GPL)
//! or run the `nft` program (`nftables`), and this project is Apache-2.0 and starts no
//! subprocess on a sandbox's start path. Only the few matches and statements the
//! fences use are here; each one's encoding is the one `nft --debug=netlink` shows,
//! and the oracle test (`tests/fence.rs`) compares `nft list table` of a table sent
//! from here with the same table loaded by `nft -f` from its text form.

use std::net::Ipv4Addr;

use netlink_packet_core::{DefaultNla, NLM_F_APPEND, NLM_F_CREATE, NetlinkMessage};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, Expressions, Hook, Immediate, InetHookNumber,
    ListAttribute, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register, RuleAttribute, RuleMessage,
    TableAttribute, TableMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

use crate::netlink::{LOOPBACK_INDEX, Netlink, NetlinkError};

/// An `inet` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub chains: Vec<Chain>,
}

/// A base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub kind: ChainKind,
    pub hook: ChainHook,
    pub priority: i32,
    /// Accept (`true`) or drop what no rule decided.
    pub accept_by_default: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Filter,
    Nat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainHook {
    Input,
    Output,
}

/// Every match holds, then the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub statement: Statement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// `oif "lo"` (or `oif != "lo"` when `false`).
    OutputIsLoopback(bool),
    /// `iif "lo"`.
    InputIsLoopback,
    /// `meta nfproto ipv4`.
    Ipv4,
    /// `meta l4proto tcp`.
    Tcp,
    /// `meta l4proto udp`.
    Udp,
    /// `ip daddr A` (implies IPv4).
    Ipv4Destination(Ipv4Addr),
    /// `tcp dport P` (implies TCP).
    TcpDestinationPort(u16),
    /// `udp dport P` (implies UDP).
    UdpDestinationPort(u16),
    /// `ct state established,related`.
    EstablishedOrRelated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    Accept,
    /// `reject with tcp reset`.
    RejectWithTcpReset,
    /// `reject with icmpx type port-unreachable`.
    RejectPortUnreachable,
    /// `dnat ip to A:P`.
    DestinationNat(Ipv4Addr, u16),
}

/// Sends `table` as one batch from the calling thread's network namespace.
pub fn apply(table: &Table) -> Result<(), NetlinkError> {
    Netlink::netfilter()?.send(&format!("loading the nftables table {}", table.name), batch(table))
}

/// nfnetlink's subsystem number of nf_tables (batch messages name it).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;

/// The batch: begin, the table, its chains, their rules, end; every message but
/// the two markers acknowledged.
pub fn batch(table: &Table) -> Vec<(NetlinkMessage<NetfilterMessage>, bool)> {
    let marker = |m: ControlMessage| {
        let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES);
        (NetlinkMessage::from(NetfilterMessage::new(header, m)), false)
    };
    let mut messages = vec![marker(ControlMessage::BatchBegin)];
    let new_table = TableMessage { attributes: vec![TableAttribute::Name(table.name.to_owned())] };
    messages.push((inet(NfTablesMessage::NewTable(new_table), NLM_F_CREATE), true));
    for chain in &table.chains {
        messages.push((inet(NfTablesMessage::NewChain(chain_message(table.name, chain)), NLM_F_CREATE), true));
    }
    for chain in &table.chains {
        for rule in &chain.rules {
            let message = RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(table.name.to_owned()),
                    RuleAttribute::Chain(chain.name.to_owned()),
                    RuleAttribute::Expressions(expressions(rule)),
                ],
            };
            messages.push((inet(NfTablesMessage::NewRule(message), NLM_F_CREATE | NLM_F_APPEND), true));
        }
    }
    messages.push(marker(ControlMessage::BatchEnd));
    messages
}

fn inet(message: NfTablesMessage, flags: u16) -> NetlinkMessage<NetfilterMessage> {
    let header = NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0);
    let mut message = NetlinkMessage::from(NetfilterMessage::new(header, message));
    message.header.flags = flags;
    message
}

fn chain_message(table: &str, chain: &Chain) -> ChainMessage {
    let hook = match chain.hook {
        ChainHook::Input => InetHookNumber::LocalIn,
        ChainHook::Output => InetHookNumber::LocalOut,
    };
    let kind = match chain.kind {
        ChainKind::Filter => "filter",
        ChainKind::Nat => "nat",
    };
    ChainMessage {
        attributes: vec![
            ChainAttribute::Table(table.to_owned()),
            ChainAttribute::Name(chain.name.to_owned()),
            ChainAttribute::Hook(vec![Hook::Number(hook.into()), Hook::Priority(chain.priority as u32)]),
            ChainAttribute::Policy(if chain.accept_by_default { NF_ACCEPT } else { NF_DROP }),
            ChainAttribute::Type(kind.to_owned()),
        ],
    }
}

type Expression = ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute>;

fn expressions(rule: &Rule) -> Vec<Expression> {
    let mut out = Vec::new();
    for m in &rule.matches {
        match_expressions(*m, &mut out);
    }
    statement_expressions(rule.statement, &mut out);
    out
}

/// Loads meta `key` into register 1.
fn meta(key: MetaKey) -> Expression {
    Expressions::Meta(vec![Meta::DestinationRegister(Register::Reg1), Meta::Key(key)]).into()
}

/// Compares register 1 with `value`.
fn cmp(op: Operator, value: Vec<u8>) -> Expression {
    Expressions::Cmp(vec![Cmp::SourceRegister(Register::Reg1), Cmp::Op(op), Cmp::Data(DataAttribute::Value(value))])
        .into()
}

/// Loads `len` bytes at `offset` of the network (1) or transport (2) header into register 1.
fn payload(base: u32, offset: u32, len: u32) -> Expression {
    Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

/// An expression the crate has no type for: its netlink attributes, numbers big-endian.
fn other(name: &str, attributes: Vec<(u16, Vec<u8>)>) -> Expression {
    let attributes = attributes.into_iter().map(|(kind, value)| DefaultNla::new(kind, value)).collect();
    Expressions::Other { expression_type: name.to_owned(), attributes }.into()
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const NFPROTO_IPV4: u8 = 2;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;

fn match_expressions(m: Match, out: &mut Vec<Expression>) {
    match m {
        Match::OutputIsLoopback(is) => {
            out.push(meta(MetaKey::Oif));
            out.push(cmp(if is { Operator::Equal } else { Operator::NotEqual }, LOOPBACK_INDEX.to_ne_bytes().into()));
        }
        Match::InputIsLoopback => {
            out.push(meta(MetaKey::Iif));
            out.push(cmp(Operator::Equal, LOOPBACK_INDEX.to_ne_bytes().into()));
        }
        Match::Ipv4 => {
            out.push(meta(MetaKey::Nfproto));
            out.push(cmp(Operator::Equal, vec![NFPROTO_IPV4]));
        }
        Match::Tcp | Match::Udp => {
            out.push(meta(MetaKey::L4Proto));
            out.push(cmp(Operator::Equal, vec![if m == Match::Tcp { IPPROTO_TCP } else { IPPROTO_UDP }]));
        }
        Match::Ipv4Destination(address) => {
            match_expressions(Match::Ipv4, out);
            out.push(payload(PAYLOAD_NETWORK, 16, 4));
            out.push(cmp(Operator::Equal, address.octets().into()));
        }
        Match::TcpDestinationPort(port) | Match::UdpDestinationPort(port) => {
            match_expressions(if matches!(m, Match::TcpDestinationPort(_)) { Match::Tcp } else { Match::Udp }, out);
            out.push(payload(PAYLOAD_TRANSPORT, 2, 2));
            out.push(cmp(Operator::Equal, port.to_be_bytes().into()));
        }
        Match::EstablishedOrRelated => {
            const NFTA_CT_DREG: u16 = 1;
            const NFTA_CT_KEY: u16 = 2;
            const NFT_CT_STATE: u32 = 0;
            // Bits of IP_CT_ESTABLISHED (1) and IP_CT_RELATED (2), host order.
            const ESTABLISHED_RELATED: u32 = (1 << 1) | (1 << 2);
            let reg1 = u32::from(Register::Reg1).to_be_bytes().into();
            out.push(other("ct", vec![(NFTA_CT_DREG, reg1), (NFTA_CT_KEY, NFT_CT_STATE.to_be_bytes().into())]));
            out.push(
                Expressions::Bitwise(vec![
                    Bitwise::SourceRegister(Register::Reg1),
                    Bitwise::DestinationRegister(Register::Reg1),
                    Bitwise::Length(4),
                    Bitwise::Mask(DataAttribute::Value(ESTABLISHED_RELATED.to_ne_bytes().into())),
                    Bitwise::Xor(DataAttribute::Value(0u32.to_ne_bytes().into())),
                ])
                .into(),
            );
            out.push(cmp(Operator::NotEqual, 0u32.to_ne_bytes().into()));
        }
    }
}

fn statement_expressions(statement: Statement, out: &mut Vec<Expression>) {
    const NFTA_REJECT_TYPE: u16 = 1;
    const NFTA_REJECT_ICMP_CODE: u16 = 2;
    let reject = |kind: u32, code: u8| {
        other("reject", vec![(NFTA_REJECT_TYPE, kind.to_be_bytes().into()), (NFTA_REJECT_ICMP_CODE, vec![code])])
    };
    match statement {
        Statement::Accept => out.push(
            Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Verdict),
                Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(Verdict::Other(NF_ACCEPT))])),
            ])
            .into(),
        ),
        // NFT_REJECT_TCP_RST.
        Statement::RejectWithTcpReset => out.push(reject(1, 0)),
        // NFT_REJECT_ICMPX_UNREACH, NFT_REJECT_ICMPX_PORT_UNREACH.
        Statement::RejectPortUnreachable => out.push(reject(2, 1)),
        Statement::DestinationNat(address, port) => {
            const NFTA_NAT_TYPE: u16 = 1;
            const NFTA_NAT_FAMILY: u16 = 2;
            const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
            const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
            const NFTA_NAT_FLAGS: u16 = 7;
            const NFT_NAT_DNAT: u32 = 1;
            const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
            let load = |register: Register, value: Vec<u8>| -> Expression {
                Expressions::Immediate(vec![
                    Immediate::DestinationRegister(register),
                    Immediate::Data(DataAttribute::Value(value)),
                ])
                .into()
            };
            out.push(load(Register::Reg1, address.octets().into()));
            out.push(load(Register::Reg2, port.to_be_bytes().into()));
            let be = |v: u32| -> Vec<u8> { v.to_be_bytes().into() };
            out.push(other(
                "nat",
                vec![
                    (NFTA_NAT_TYPE, be(NFT_NAT_DNAT)),
                    (NFTA_NAT_FAMILY, be(u32::from(NFPROTO_IPV4))),
                    (NFTA_NAT_REG_ADDR_MIN, be(u32::from(Register::Reg1))),
                    (NFTA_NAT_REG_PROTO_MIN, be(u32::from(Register::Reg2))),
                    (NFTA_NAT_FLAGS, be(NF_NAT_RANGE_PROTO_SPECIFIED)),
                ],
            ));
        }
    }
}
