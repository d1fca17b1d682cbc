//! The raw layer: KDL text parsed (kdl v6, KDL 2.0) into plan nodes that keep every span. No I/O.
