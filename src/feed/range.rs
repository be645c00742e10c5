//! An inclusive range of IP addresses of one family.
//!
//! Feeds describe address space in two shapes: ip2asn lines give a first and
//! last address, CSV lines give a CIDR prefix. Both become an [`IpRange`], so
//! aggregation works on one type and never sees a range whose ends disagree
//! on the family or come in the wrong order: the constructor refuses those.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The inclusive range `start..=end`; both ends have the same family and
/// `start <= end`.
///
/// Ranges order by start address, IPv4 before IPv6 (the order of [`IpAddr`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

/// Why two addresses do not make an [`IpRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// One end is IPv4 and the other IPv6.
    #[error("range start {start} and end {end} are of different address families")]
    MixedFamilies {
        /// The first address.
        start: IpAddr,
        /// The last address.
        end: IpAddr,
    },
    /// The first address comes after the last.
    #[error("range start {start} is after its end {end}")]
    Reversed {
        /// The first address.
        start: IpAddr,
        /// The last address.
        end: IpAddr,
    },
}

impl IpRange {
    /// The range `start..=end`, if both are of one family and in order.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<Self, RangeError> {
        if start.is_ipv4() != end.is_ipv4() {
            return Err(RangeError::MixedFamilies { start, end });
        }
        if start > end {
            return Err(RangeError::Reversed { start, end });
        }
        Ok(Self { start, end })
    }

    /// The addresses a prefix covers, from its network to its broadcast address.
    pub fn from_net(net: IpNet) -> Self {
        Self {
            start: net.network(),
            end: net.broadcast(),
        }
    }

    /// The first address.
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// The last address (inclusive).
    pub fn end(&self) -> IpAddr {
        self.end
    }
}

impl fmt::Debug for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rejects_mixed_families_and_reversed_ends() {
        let err = IpRange::new(ip("1.0.0.0"), ip("::1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "range start 1.0.0.0 and end ::1 are of different address families"
        );
        let err = IpRange::new(ip("1.0.0.9"), ip("1.0.0.1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "range start 1.0.0.9 is after its end 1.0.0.1"
        );
        assert!(IpRange::new(ip("1.0.0.1"), ip("1.0.0.1")).is_ok());
    }

    #[test]
    fn prefix_covers_network_to_broadcast() {
        let r = IpRange::from_net("2001:db8::/126".parse().unwrap());
        assert_eq!((r.start(), r.end()), (ip("2001:db8::"), ip("2001:db8::3")));
    }

    #[test]
    fn ipv4_ranges_sort_before_ipv6() {
        let v6 = IpRange::new(ip("::"), ip("::1")).unwrap();
        let v4 = IpRange::new(ip("255.0.0.0"), ip("255.0.0.1")).unwrap();
        assert!(v4 < v6);
    }
}
