//! RTSP status codes and their reason phrases.
//!
//! Implements the status code registry of RFC 2326 §7.1.1 (RTSP/1.0) and RFC 7826 §17
//! (RTSP/2.0). HTTP replies on the tunnel's GET channel use the same type.
//!
//! Where the two RFCs name a code differently, [`StatusCode::reason`] gives the RTSP/1.0
//! phrase (what RTSP/1.0 peers, i.e. nearly all of them, print and expect) and
//! [`StatusCode::rtsp2_reason`] the RTSP/2.0 one:
//!
//! | code | RFC 2326 (RTSP/1.0)              | RFC 7826 (RTSP/2.0)              |
//! |------|----------------------------------|----------------------------------|
//! | 302  | Moved Temporarily                | Found                            |
//! | 408  | Request Time-out                 | Request Timeout                  |
//! | 413  | Request Entity Too Large         | Request Message Body Too Large   |
//! | 414  | Request-URI Too Large            | Request-URI Too Long             |
//! | 452  | Conference Not Found             | (reserved)                       |
//! | 459  | Aggregate operation not allowed  | Aggregate Operation Not Allowed  |
//! | 460  | Only aggregate operation allowed | Only Aggregate Operation Allowed |
//! | 461  | Unsupported transport            | Unsupported Transport            |
//! | 462  | Destination unreachable          | Destination Unreachable          |
//! | 504  | Gateway Time-out                 | Gateway Timeout                  |
//! | 505  | RTSP Version not supported       | RTSP Version Not Supported       |
//! | 551  | Option not supported             | Option Not Supported             |
//!
//! 201, 250, 300 and 411 exist only in RTSP/1.0; 463-466, 470-472 and 553 only in
//! RTSP/2.0. Neither RFC defines 555 or 556; such codes (like any 100-599 code) are
//! still representable and fall back to their class phrase (RFC 2326 §7.1.1: an
//! unknown code is treated as the x00 code of its class).
//!
//! What it does not do: decide what a status means for a session; that is the
//! engines' job.

use std::fmt;

/// A three-digit RTSP/HTTP status code, always in `100..=599`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

macro_rules! status_codes {
    ($( $(#[$doc:meta])* ($code:expr, $name:ident, $rtsp1:expr, $rtsp2:expr); )+) => {
        impl StatusCode {
            $( $(#[$doc])* pub const $name: StatusCode = StatusCode($code); )+

            /// Every status code named by RFC 2326 or RFC 7826, in numeric order.
            pub const KNOWN: &'static [StatusCode] = &[$(StatusCode($code)),+];

            fn phrases(self) -> Option<(&'static str, &'static str)> {
                match self.0 {
                    $( $code => Some(($rtsp1, $rtsp2)), )+
                    _ => None,
                }
            }
        }
    };
}

status_codes! {
    /// 100 Continue.
    (100, CONTINUE, "Continue", "Continue");
    /// 200 OK.
    (200, OK, "OK", "OK");
    /// 201 Created (RTSP/1.0 only, RECORD).
    (201, CREATED, "Created", "Created");
    /// 250 Low on Storage Space (RTSP/1.0 only, RECORD).
    (250, LOW_ON_STORAGE_SPACE, "Low on Storage Space", "Low on Storage Space");
    /// 300 Multiple Choices (RTSP/1.0 only).
    (300, MULTIPLE_CHOICES, "Multiple Choices", "Multiple Choices");
    /// 301 Moved Permanently.
    (301, MOVED_PERMANENTLY, "Moved Permanently", "Moved Permanently");
    /// 302 Moved Temporarily (RTSP/2.0: "Found").
    (302, MOVED_TEMPORARILY, "Moved Temporarily", "Found");
    /// 303 See Other.
    (303, SEE_OTHER, "See Other", "See Other");
    /// 304 Not Modified (cache revalidation, RFC 2326 §12.23, RFC 7826 §17.3.5).
    (304, NOT_MODIFIED, "Not Modified", "Not Modified");
    /// 305 Use Proxy.
    (305, USE_PROXY, "Use Proxy", "Use Proxy");
    /// 400 Bad Request.
    (400, BAD_REQUEST, "Bad Request", "Bad Request");
    /// 401 Unauthorized.
    (401, UNAUTHORIZED, "Unauthorized", "Unauthorized");
    /// 402 Payment Required.
    (402, PAYMENT_REQUIRED, "Payment Required", "Payment Required");
    /// 403 Forbidden.
    (403, FORBIDDEN, "Forbidden", "Forbidden");
    /// 404 Not Found.
    (404, NOT_FOUND, "Not Found", "Not Found");
    /// 405 Method Not Allowed.
    (405, METHOD_NOT_ALLOWED, "Method Not Allowed", "Method Not Allowed");
    /// 406 Not Acceptable.
    (406, NOT_ACCEPTABLE, "Not Acceptable", "Not Acceptable");
    /// 407 Proxy Authentication Required.
    (407, PROXY_AUTHENTICATION_REQUIRED, "Proxy Authentication Required",
        "Proxy Authentication Required");
    /// 408 Request Time-out (RTSP/2.0: "Request Timeout").
    (408, REQUEST_TIMEOUT, "Request Time-out", "Request Timeout");
    /// 410 Gone.
    (410, GONE, "Gone", "Gone");
    /// 411 Length Required (RTSP/1.0 only).
    (411, LENGTH_REQUIRED, "Length Required", "Length Required");
    /// 412 Precondition Failed.
    (412, PRECONDITION_FAILED, "Precondition Failed", "Precondition Failed");
    /// 413 Request Entity Too Large (RTSP/2.0: "Request Message Body Too Large").
    (413, REQUEST_ENTITY_TOO_LARGE, "Request Entity Too Large",
        "Request Message Body Too Large");
    /// 414 Request-URI Too Large (RTSP/2.0: "Request-URI Too Long").
    (414, REQUEST_URI_TOO_LARGE, "Request-URI Too Large", "Request-URI Too Long");
    /// 415 Unsupported Media Type.
    (415, UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type", "Unsupported Media Type");
    /// 451 Parameter Not Understood (SET_PARAMETER/GET_PARAMETER in both versions).
    (451, PARAMETER_NOT_UNDERSTOOD, "Parameter Not Understood", "Parameter Not Understood");
    /// 452 Conference Not Found (RTSP/1.0; reserved in RTSP/2.0).
    (452, CONFERENCE_NOT_FOUND, "Conference Not Found", "reserved");
    /// 453 Not Enough Bandwidth.
    (453, NOT_ENOUGH_BANDWIDTH, "Not Enough Bandwidth", "Not Enough Bandwidth");
    /// 454 Session Not Found.
    (454, SESSION_NOT_FOUND, "Session Not Found", "Session Not Found");
    /// 455 Method Not Valid in This State.
    (455, METHOD_NOT_VALID_IN_THIS_STATE, "Method Not Valid in This State",
        "Method Not Valid in This State");
    /// 456 Header Field Not Valid for Resource.
    (456, HEADER_FIELD_NOT_VALID_FOR_RESOURCE, "Header Field Not Valid for Resource",
        "Header Field Not Valid for Resource");
    /// 457 Invalid Range.
    (457, INVALID_RANGE, "Invalid Range", "Invalid Range");
    /// 458 Parameter Is Read-Only.
    (458, PARAMETER_IS_READ_ONLY, "Parameter Is Read-Only", "Parameter Is Read-Only");
    /// 459 Aggregate operation not allowed.
    (459, AGGREGATE_OPERATION_NOT_ALLOWED, "Aggregate operation not allowed",
        "Aggregate Operation Not Allowed");
    /// 460 Only aggregate operation allowed.
    (460, ONLY_AGGREGATE_OPERATION_ALLOWED, "Only aggregate operation allowed",
        "Only Aggregate Operation Allowed");
    /// 461 Unsupported transport.
    (461, UNSUPPORTED_TRANSPORT, "Unsupported transport", "Unsupported Transport");
    /// 462 Destination unreachable.
    (462, DESTINATION_UNREACHABLE, "Destination unreachable", "Destination Unreachable");
    /// 463 Destination Prohibited (RTSP/2.0).
    (463, DESTINATION_PROHIBITED, "Destination Prohibited", "Destination Prohibited");
    /// 464 Data Transport Not Ready Yet (RTSP/2.0).
    (464, DATA_TRANSPORT_NOT_READY_YET, "Data Transport Not Ready Yet",
        "Data Transport Not Ready Yet");
    /// 465 Notification Reason Unknown (RTSP/2.0, PLAY_NOTIFY).
    (465, NOTIFICATION_REASON_UNKNOWN, "Notification Reason Unknown",
        "Notification Reason Unknown");
    /// 466 Key Management Error (RTSP/2.0).
    (466, KEY_MANAGEMENT_ERROR, "Key Management Error", "Key Management Error");
    /// 470 Connection Authorization Required (RTSP/2.0).
    (470, CONNECTION_AUTHORIZATION_REQUIRED, "Connection Authorization Required",
        "Connection Authorization Required");
    /// 471 Connection Credentials Not Accepted (RTSP/2.0).
    (471, CONNECTION_CREDENTIALS_NOT_ACCEPTED, "Connection Credentials Not Accepted",
        "Connection Credentials Not Accepted");
    /// 472 Failure to Establish Secure Connection (RTSP/2.0).
    (472, FAILURE_TO_ESTABLISH_SECURE_CONNECTION, "Failure to Establish Secure Connection",
        "Failure to Establish Secure Connection");
    /// 500 Internal Server Error.
    (500, INTERNAL_SERVER_ERROR, "Internal Server Error", "Internal Server Error");
    /// 501 Not Implemented.
    (501, NOT_IMPLEMENTED, "Not Implemented", "Not Implemented");
    /// 502 Bad Gateway.
    (502, BAD_GATEWAY, "Bad Gateway", "Bad Gateway");
    /// 503 Service Unavailable.
    (503, SERVICE_UNAVAILABLE, "Service Unavailable", "Service Unavailable");
    /// 504 Gateway Time-out (RTSP/2.0: "Gateway Timeout").
    (504, GATEWAY_TIMEOUT, "Gateway Time-out", "Gateway Timeout");
    /// 505 RTSP Version not supported.
    (505, RTSP_VERSION_NOT_SUPPORTED, "RTSP Version not supported",
        "RTSP Version Not Supported");
    /// 551 Option not supported (a `Require`/`Proxy-Require` tag was not understood).
    (551, OPTION_NOT_SUPPORTED, "Option not supported", "Option Not Supported");
    /// 553 Proxy Unavailable (RTSP/2.0).
    (553, PROXY_UNAVAILABLE, "Proxy Unavailable", "Proxy Unavailable");
}

impl StatusCode {
    /// RTSP/2.0 name of 302.
    pub const FOUND: StatusCode = StatusCode::MOVED_TEMPORARILY;
    /// RTSP/2.0 name of 413.
    pub const REQUEST_MESSAGE_BODY_TOO_LARGE: StatusCode = StatusCode::REQUEST_ENTITY_TOO_LARGE;
    /// RTSP/2.0 name of 414.
    pub const REQUEST_URI_TOO_LONG: StatusCode = StatusCode::REQUEST_URI_TOO_LARGE;

    /// A status code from its number; `None` outside `100..=599`, which no peer may send
    /// (the first digit is the class, RFC 2326 §7.1.1).
    pub const fn from_u16(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 599 {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The class digit: 1 to 5.
    pub const fn class(self) -> u16 {
        self.0 / 100
    }

    /// Whether RFC 2326 or RFC 7826 names this code.
    pub fn is_known(self) -> bool {
        self.phrases().is_some()
    }

    /// The RTSP/1.0 reason phrase (RFC 2326 §7.1.1); for a code neither RFC names, the
    /// name of its class, e.g. "Client Error".
    pub fn reason(self) -> &'static str {
        match self.phrases() {
            Some((rtsp1, _)) => rtsp1,
            None => self.class_phrase(),
        }
    }

    /// The RTSP/2.0 reason phrase (RFC 7826 §17); falls back like [`StatusCode::reason`].
    pub fn rtsp2_reason(self) -> &'static str {
        match self.phrases() {
            Some((_, rtsp2)) => rtsp2,
            None => self.class_phrase(),
        }
    }

    fn class_phrase(self) -> &'static str {
        match self.class() {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        }
    }

    /// 1xx.
    pub const fn is_informational(self) -> bool {
        self.class() == 1
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// 3xx.
    pub const fn is_redirection(self) -> bool {
        self.class() == 3
    }

    /// 4xx.
    pub const fn is_client_error(self) -> bool {
        self.class() == 4
    }

    /// 5xx.
    pub const fn is_server_error(self) -> bool {
        self.class() == 5
    }

    /// 4xx or 5xx.
    pub const fn is_error(self) -> bool {
        self.class() >= 4
    }

    /// The three ASCII digits, for serialisers that must not allocate.
    pub const fn digits(self) -> [u8; 3] {
        let c = self.0;
        // from_u16 guarantees c <= 599, so every quotient below is one digit.
        [
            b'0' + (c / 100) as u8,
            b'0' + (c / 10 % 10) as u8,
            b'0' + (c % 10) as u8,
        ]
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<StatusCode> for u16 {
    fn from(s: StatusCode) -> u16 {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtsp1_and_rtsp2_phrases_differ_where_documented() {
        assert_eq!(StatusCode::MOVED_TEMPORARILY.reason(), "Moved Temporarily");
        assert_eq!(StatusCode::FOUND.rtsp2_reason(), "Found");
        assert_eq!(StatusCode::REQUEST_TIMEOUT.reason(), "Request Time-out");
        assert_eq!(
            StatusCode::REQUEST_TIMEOUT.rtsp2_reason(),
            "Request Timeout"
        );
        assert_eq!(
            StatusCode::REQUEST_ENTITY_TOO_LARGE.rtsp2_reason(),
            "Request Message Body Too Large"
        );
        assert_eq!(StatusCode::REQUEST_URI_TOO_LONG.as_u16(), 414);
        assert_eq!(
            StatusCode::RTSP_VERSION_NOT_SUPPORTED.reason(),
            "RTSP Version not supported"
        );
        assert_eq!(
            StatusCode::OPTION_NOT_SUPPORTED.reason(),
            "Option not supported"
        );
        assert_eq!(
            StatusCode::OPTION_NOT_SUPPORTED.rtsp2_reason(),
            "Option Not Supported"
        );
    }

    #[test]
    fn every_code_from_both_rfcs_is_named() {
        let numbers: Vec<u16> = StatusCode::KNOWN.iter().map(|s| s.as_u16()).collect();
        assert_eq!(
            numbers,
            [
                100, 200, 201, 250, 300, 301, 302, 303, 304, 305, 400, 401, 402, 403, 404, 405,
                406, 407, 408, 410, 411, 412, 413, 414, 415, 451, 452, 453, 454, 455, 456, 457,
                458, 459, 460, 461, 462, 463, 464, 465, 466, 470, 471, 472, 500, 501, 502, 503,
                504, 505, 551, 553
            ]
        );
        assert_eq!(StatusCode::USE_PROXY.reason(), "Use Proxy");
        assert_eq!(
            StatusCode::PARAMETER_NOT_UNDERSTOOD.reason(),
            "Parameter Not Understood"
        );
        assert_eq!(StatusCode::SESSION_NOT_FOUND.as_u16(), 454);
        assert_eq!(
            StatusCode::METHOD_NOT_VALID_IN_THIS_STATE.reason(),
            "Method Not Valid in This State"
        );
        assert_eq!(StatusCode::PROXY_UNAVAILABLE.reason(), "Proxy Unavailable");
        assert_eq!(StatusCode::DESTINATION_PROHIBITED.as_u16(), 463);
        assert_eq!(StatusCode::CONFERENCE_NOT_FOUND.rtsp2_reason(), "reserved");
    }

    #[test]
    fn unknown_codes_use_their_class_phrase() {
        let s = StatusCode::from_u16(555).expect("in range");
        assert!(!s.is_known());
        assert_eq!(s.reason(), "Server Error");
        assert_eq!(
            StatusCode::from_u16(431).map(|s| s.reason()),
            Some("Client Error")
        );
        assert_eq!(
            StatusCode::from_u16(199).map(|s| s.rtsp2_reason()),
            Some("Informational")
        );
    }

    #[test]
    fn range_and_classes() {
        assert_eq!(StatusCode::from_u16(99), None);
        assert_eq!(StatusCode::from_u16(600), None);
        assert_eq!(StatusCode::from_u16(0), None);
        assert!(StatusCode::OK.is_success());
        assert!(StatusCode::CONTINUE.is_informational());
        assert!(StatusCode::USE_PROXY.is_redirection());
        assert!(StatusCode::UNAUTHORIZED.is_client_error());
        assert!(StatusCode::UNAUTHORIZED.is_error());
        assert!(StatusCode::BAD_GATEWAY.is_server_error());
        assert!(!StatusCode::OK.is_error());
    }

    #[test]
    fn digits_and_display() {
        assert_eq!(&StatusCode::NOT_FOUND.digits(), b"404");
        assert_eq!(&StatusCode::CONTINUE.digits(), b"100");
        assert_eq!(StatusCode::from_u16(599).map(|s| s.digits()), Some(*b"599"));
        assert_eq!(StatusCode::OPTION_NOT_SUPPORTED.to_string(), "551");
        assert_eq!(u16::from(StatusCode::OK), 200);
    }
}
