//! Netlink from the calling thread's network namespace, synchronously: the link,
//! address and route requests of a sandbox's network (`netlink-packet-route`), and
//! the sending of an nftables batch ([`crate::nft`]). A socket belongs to the
//! namespace it was opened in, so a thread that joined a sandbox's namespace opens
//! its own. No subprocess: the fence used to run `ip` and `nft`, which cost more than
//! the rest of a sandbox's start.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols};

/// A netlink request the kernel did not carry out.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("{what}: netlink socket: {source}")]
    Socket {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Refused {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: the kernel's answer could not be read ({detail})")]
    Answer { what: String, detail: String },
}

/// An open netlink socket of one protocol, in the namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// NETLINK_ROUTE: links, addresses, routes.
    pub fn route() -> Result<Netlink, NetlinkError> {
        Self::open(protocols::NETLINK_ROUTE, "rtnetlink")
    }

    /// NETLINK_NETFILTER: nftables batches.
    pub fn netfilter() -> Result<Netlink, NetlinkError> {
        Self::open(protocols::NETLINK_NETFILTER, "nfnetlink")
    }

    fn open(protocol: isize, what: &str) -> Result<Netlink, NetlinkError> {
        let socket_err = |source| NetlinkError::Socket { what: what.to_owned(), source };
        let mut socket = Socket::new(protocol).map_err(socket_err)?;
        socket.bind_auto().map_err(socket_err)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(socket_err)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends `messages` in one datagram, each asking for an acknowledgement
    /// (`acked[i]`), and waits for every acknowledgement; the first refusal is the
    /// error. The kernel applies an nftables batch whole or not at all.
    pub fn send<T: NetlinkSerializable>(
        &mut self,
        what: &str,
        messages: Vec<(NetlinkMessage<T>, bool)>,
    ) -> Result<(), NetlinkError> {
        let mut waiting = self.transmit(what, messages)?;
        while !waiting.is_empty() {
            for (seq, code) in self.acknowledgements(what)? {
                if code != 0 {
                    return Err(NetlinkError::Refused {
                        what: what.to_owned(),
                        source: std::io::Error::from_raw_os_error(-code),
                    });
                }
                waiting.retain(|s| *s != seq);
            }
        }
        Ok(())
    }

    /// Numbers and sends `messages` in one datagram; the sequence numbers of those
    /// that ask for an acknowledgement.
    fn transmit<T: NetlinkSerializable>(
        &mut self,
        what: &str,
        messages: Vec<(NetlinkMessage<T>, bool)>,
    ) -> Result<Vec<u32>, NetlinkError> {
        let mut buffer = Vec::new();
        let mut acked = Vec::new();
        for (mut message, ack) in messages {
            self.seq += 1;
            message.header.sequence_number = self.seq;
            message.header.flags |= NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 };
            message.finalize();
            let start = buffer.len();
            buffer.resize(start + message.buffer_len(), 0);
            message.serialize(&mut buffer[start..]);
            if ack {
                acked.push(self.seq);
            }
        }
        self.socket.send(&buffer, 0).map_err(|source| NetlinkError::Socket { what: what.to_owned(), source })?;
        Ok(acked)
    }

    /// The (sequence number, error code) of each acknowledgement in the next datagram.
    fn acknowledgements(&self, what: &str) -> Result<Vec<(u32, i32)>, NetlinkError> {
        let (datagram, _) =
            self.socket.recv_from_full().map_err(|source| NetlinkError::Socket { what: what.to_owned(), source })?;
        let answer = |detail: String| NetlinkError::Answer { what: what.to_owned(), detail };
        let mut acks = Vec::new();
        let mut rest = &datagram[..];
        while !rest.is_empty() {
            let message = NetlinkBuffer::new_checked(rest).map_err(|e| answer(e.to_string()))?;
            let length = (message.length() as usize).next_multiple_of(4).min(rest.len());
            if message.message_type() == NLMSG_ERROR {
                let payload = message.payload();
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| answer("a short error message".into()))?;
                acks.push((message.sequence_number(), code));
            }
            rest = &rest[length..];
        }
        Ok(acks)
    }

    /// One rtnetlink request with its acknowledgement.
    fn request(&mut self, what: &str, flags: u16, message: RouteNetlinkMessage) -> Result<(), NetlinkError> {
        self.send(what, vec![(route_message(flags, message), true)])
    }

    /// A veth pair: `host` here, and its peer named `peer` in the network namespace
    /// `netns` (made there directly, so it never appears in this one).
    pub fn add_veth(&mut self, host: &str, peer: &str, netns: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        let mut peer_link = LinkMessage::default();
        peer_link.attributes = vec![LinkAttribute::IfName(peer.to_owned()), LinkAttribute::NetNsFd(netns.as_raw_fd())];
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(host.to_owned()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_link))),
            ]),
        ];
        let what = format!("creating the veth pair {host}/{peer}");
        self.request(&what, NLM_F_CREATE | NLM_F_EXCL, RouteNetlinkMessage::NewLink(link))
    }

    /// `address`/`prefix` on the link `index`.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes = vec![AddressAttribute::Local(address.into()), AddressAttribute::Address(address.into())];
        let what = format!("adding {address}/{prefix} to link {index}");
        self.request(&what, NLM_F_CREATE | NLM_F_EXCL, RouteNetlinkMessage::NewAddress(message))
    }

    /// Brings the link `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.request(&format!("bringing link {index} up"), 0, RouteNetlinkMessage::NewLink(link))
    }

    /// The default route, through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        let what = format!("adding the default route via {gateway}");
        self.request(&what, NLM_F_CREATE | NLM_F_EXCL, RouteNetlinkMessage::NewRoute(route))
    }

    /// Deletes the link named `name` (a veth pair goes whole).
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        self.request(&format!("deleting the link {name}"), 0, RouteNetlinkMessage::DelLink(link))
    }
}

/// The index of the link named `name` in the calling thread's namespace
/// (`if_nametoindex`: its answer needs no parsing of a whole link message).
pub fn link_index(name: &str) -> Result<u32, NetlinkError> {
    nix::net::if_::if_nametoindex(name)
        .map_err(|e| NetlinkError::Refused { what: format!("finding the link {name}"), source: e.into() })
}

/// Why a thread could not work in a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("joining the network namespace {path}: {source}")]
    Join {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the thread that joined the network namespace {0} panicked")]
    Panicked(String),
}

/// Runs `f` on a thread that joined the network namespace at `netns`
/// (`/proc/PID/ns/net` or `/run/netns/NAME`): what it creates (sockets, netlink
/// sockets) lives there. setns changes only the calling thread's namespace.
pub fn in_namespace<T, E>(netns: &str, f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<NamespaceError> + Send + 'static,
{
    let join = |source: std::io::Error| NamespaceError::Join { path: netns.to_owned(), source };
    let ns = std::fs::File::open(netns).map_err(join)?;
    let path = netns.to_owned();
    let inside = std::thread::spawn(move || -> Result<T, E> {
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|e| NamespaceError::Join { path, source: e.into() })?;
        f()
    });
    inside.join().unwrap_or_else(|_| Err(NamespaceError::Panicked(netns.to_owned()).into()))
}

/// The loopback device's index in every network namespace.
pub const LOOPBACK_INDEX: u32 = 1;

fn route_message(flags: u16, message: RouteNetlinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut message = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
    message.header.flags = flags;
    message
}
