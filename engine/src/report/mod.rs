//! Reporters: the one component that writes to the terminal. TTY progress, plain lines, JSON lines.
