//! L4 services: TCP proxy, UDP sessions, port groups. SKELETON: the L4 slice fills it in.
