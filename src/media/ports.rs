//! RTP port allocation: even ports (RTP) from the configured range, the odd one above left for
//! RTCP. Pure bookkeeping; the media driver binds the sockets.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct PortAllocator {
    free: VecDeque<u16>,
    capacity: usize,
}

impl PortAllocator {
    /// All even ports `p` with `min <= p` and `p + 1 <= max`.
    pub fn new(min: u16, max: u16) -> Self {
        let first = min + (min % 2);
        let free: VecDeque<u16> = (first..max).step_by(2).collect();
        let capacity = free.len();
        Self { free, capacity }
    }

    /// Least recently released port first, so a late packet of an old call rarely hits a new one.
    pub fn allocate(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub fn release(&mut self, port: u16) {
        debug_assert!(!self.free.contains(&port), "port {port} released twice");
        self.free.push_back(port);
    }

    pub fn in_use(&self) -> usize {
        self.capacity - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_even_ports_and_reuses_oldest_released() {
        let mut ports = PortAllocator::new(20001, 20008);
        assert_eq!(ports.allocate(), Some(20002));
        assert_eq!(ports.allocate(), Some(20004));
        assert_eq!(ports.allocate(), Some(20006));
        assert_eq!(
            ports.allocate(),
            None,
            "20008 has no odd RTCP port inside the range"
        );
        assert_eq!(ports.in_use(), 3);
        ports.release(20004);
        ports.release(20002);
        assert_eq!(ports.allocate(), Some(20004));
        assert_eq!(ports.in_use(), 2);
    }
}
