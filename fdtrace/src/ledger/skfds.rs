//! The fds of one fd table that refer to one socket: almost always one
//! (dups share a socket), kept without an allocation then. A `Vec` per
//! socket was a 4-byte allocation each, 32 bytes with malloc's overhead:
//! 3.2 MB at 100,000 sockets.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SkFds {
    #[default]
    None,
    One(i32),
    Many(Vec<i32>),
}

impl SkFds {
    pub fn push(&mut self, fd: i32) {
        *self = match std::mem::take(self) {
            SkFds::None => SkFds::One(fd),
            SkFds::One(a) => SkFds::Many(vec![a, fd]),
            SkFds::Many(mut v) => {
                v.push(fd);
                SkFds::Many(v)
            }
        };
    }

    /// Removes `fd` (one of it); returns whether none is left.
    pub fn remove(&mut self, fd: i32) -> bool {
        match self {
            SkFds::None => {}
            SkFds::One(a) => {
                if *a == fd {
                    *self = SkFds::None;
                }
            }
            SkFds::Many(v) => {
                if let Some(i) = v.iter().position(|&f| f == fd) {
                    v.swap_remove(i);
                }
                if let [only] = v[..] {
                    *self = SkFds::One(only);
                }
            }
        }
        *self == SkFds::None
    }

    pub fn to_vec(&self) -> Vec<i32> {
        match self {
            SkFds::None => vec![],
            SkFds::One(a) => vec![*a],
            SkFds::Many(v) => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fd_inline_more_in_a_vector_and_back() {
        let mut s = SkFds::default();
        s.push(3);
        assert_eq!(s, SkFds::One(3));
        s.push(7);
        s.push(9);
        assert_eq!(s.to_vec(), [3, 7, 9]);
        assert!(!s.remove(3));
        assert!(!s.remove(42), "an fd it does not hold changes nothing");
        assert_eq!(s.to_vec().len(), 2);
        assert!(!s.remove(9));
        assert_eq!(s, SkFds::One(7));
        assert!(s.remove(7), "none left");
        assert!(s.remove(7));
    }
}
