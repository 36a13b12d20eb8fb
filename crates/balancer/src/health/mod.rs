//! Health of back ends: rise/fall state, agent replies, active checks. SKELETON: the
//! scheduler-and-health slice fills it in.
