//! Real packets captured on loopback from ffmpeg 5.1 and GStreamer 1.22 (Debian 12),
//! kept as hex so tests assert on exact header values of what real programs send.
//!
//! Captured with a UDP listener while running e.g.
//! `ffmpeg -re -f lavfi -i testsrc=size=160x120:rate=10 -c:v libx264 -g 10
//!  -bsf:v filter_units=remove_types=6 -f rtp rtp://127.0.0.1:5030?pkt_size=160`
//! and `gst-launch-1.0 rtpbin ... audiotestsrc samplesperbuffer=160 ! mulawenc !
//! rtppcmupay ...` (the receiver's RR came from a second rtpbin).

/// Decodes a hex literal; test-only, so a bad literal may panic.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex literal");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex literal"))
        .collect()
}

/// ffmpeg 5.1 (Debian 12) + libx264, `-rtpflags h264_mode0`, 64x64: SPS as a single NAL unit packet.
pub(crate) const FFMPEG_H264_SPS: &str = concat!(
    "80600bc6e669e8f5ac779b006764000aacd94426c04400000300040000030050",
    "3c489658",
);

/// Same stream: PPS as a single NAL unit packet.
pub(crate) const FFMPEG_H264_PPS: &str = "80600bc7e669e8f5ac779b0068ef8fcb";

/// Same stream: a whole IDR slice (type 5) in one packet, marker set.
pub(crate) const FFMPEG_H264_IDR_SINGLE: &str = concat!(
    "80e00bc8e669e8f5ac779b006588840011ffe27f05defa45ce32001fdb764fa7",
    "05a9bf7bc69e692d417583763177adc961d59d1248c91d",
);

/// Same stream: a non-IDR slice (type 1), marker set.
pub(crate) const FFMPEG_H264_P_SLICE: &str = "80e00bc9e66a7595ac779b00419a2418821ffeaa57de";

/// ffmpeg + libx264, packetization-mode=1, 64x64, SEI removed: STAP-A with SPS, PPS and a whole IDR slice.
pub(crate) const FFMPEG_H264_STAP_A_SPS_PPS_IDR: &str = concat!(
    "80e00065aada01fa47dc8a8e1800186764000aacd94426c04400000300040000",
    "0300503c489658000468ef8fcb002b6588840011ffe27f05defa45ce32001fdb",
    "764fa705a9bf7bc69e692d417583763177adc961d59d1248c91d",
);

/// ffmpeg + libx264, 160x120, pkt_size=160: STAP-A with SPS and PPS before an IDR.
pub(crate) const FFMPEG_H264_STAP_A_SPS_PPS: &str = concat!(
    "806007935ad3374d462d20a318001a67f4000a919b28508fc4e0220000030002",
    "00000300281e244b2c000668ef8f192190",
);

/// Same stream: FU-A, S bit set, fragment of an IDR slice (type 5).
pub(crate) const FFMPEG_H264_FU_A_IDR_START: &str = concat!(
    "806007945ad3374d462d20a37c858884003fffdcfe0b77671338cdb3fffffee5",
    "247f21801c68006eb18982ec306c44b9c275fde10f018a2270c228b8e6e093c7",
    "f4c1088e063ffffff98a7cfc9614d04d2830d3edbc8cbfd08fd1b802b6b47e41",
    "25137939face132433815cc649165380be774654e428cce7eaaeebbe1875e018",
    "663a8c6c2f3d2f2b958fbd1cad66b184c3bd0c89bc90923362232be36c7d146f",
);

/// Same stream: the next FU-A of that IDR (neither S nor E).
pub(crate) const FFMPEG_H264_FU_A_IDR_MIDDLE: &str = concat!(
    "806007955ad3374d462d20a37c05a12380ee4cbd28e863dd29e1bd767bedb118",
    "f1b4e0cce46712e809a2701654b6f512ff4e68c571be68aac67a55abc919850c",
    "3e3ffbf5dfa1c3ee4a85ecb41967450183b76206707d012bf1c0460e7e88ea65",
    "2ba9b3948859bee11416c2789a5e1e997695a8ec9b93f58d5c16929807fd1957",
    "e84daf1e3523fc300e73562b5cf650bd37498ac5729dffffb12275ff53febce9",
);

/// Same stream: the last FU-A of that IDR (E bit, marker set).
pub(crate) const FFMPEG_H264_FU_A_IDR_END: &str = concat!(
    "80e007a05ad3374d462d20a37c45ed81d37458ba3069793fa043b465a76659a8",
    "48761c37b6ed3d0263f0c4ae3eaa413035b774480ffd1ad682dfab4abc4d468d",
    "f1ede0e77d9fbfd4dc786a31e1e5d4c606b1",
);

/// Same stream: FU-A, S bit set, fragment of a non-IDR slice (type 1).
pub(crate) const FFMPEG_H264_FU_A_P_START: &str = concat!(
    "806007a15ad35a75462d20a35c819a211887fffe5427fed77ab44800e3ffd6e1",
    "e73c67413acfad31c1813bd6fcfac1f3f6e6134e507fb1e11354dbad89b18e20",
    "7dfa5ad3bd4aa64dd0fde4bb0dd38a71b60575ecd3f94b56c52a5b9e76eac15d",
    "e4d756451217cc71f3b1fd4f42a4b126dc3eda131e6e80a98785271b318a6e4d",
    "3677e8aa3ef3de46f146dd11eb65bbed823897353a95d6d2f6eab66eee11ee58",
);

/// ffmpeg + libx265, 160x120, pkt_size=160, SEI removed: AP (48) with VPS, SPS and PPS.
pub(crate) const FFMPEG_H265_AP_VPS_SPS_PPS: &str = concat!(
    "806007ff6b9330cdccf7d8256001001740010c01ffff0408000003009e080000",
    "0300001e959809002c4201010408000003009e0800000300001e9002840f2cb2",
    "b349265780b702020004000003000400000300282000084401c172860c4624",
);

/// Same stream: FU (49), S bit set, first fragment of an IDR_N_LP (20) slice.
pub(crate) const FFMPEG_H265_FU_IDR_START: &str = concat!(
    "806008006b9330cdccf7d825620194af1142b4782fbffeaa933fffb7e4fffee3",
    "4fc5bffc384dfd8e07fa4c376e15c0b640b7423419f63bc1b585a93f186aa1ed",
    "9eb6b3ffffffff288bbd042c8f8f4ffffffdcd95eb0415d0f6244ee156a37d58",
    "e7664d1d5f22155526ac4c4bdaa5483dd3c4f0669ec552d6ee5d6411a139d8e4",
    "75215308e4ce9b7d550b643061cb93c1e38d8f75db7e5357f55ab52e00bfd5fa",
);

/// Same stream: the next FU of that IDR (neither S nor E).
pub(crate) const FFMPEG_H265_FU_IDR_MIDDLE: &str = concat!(
    "806008016b9330cdccf7d825620114f3cf5db7b29c6f7892fc7af807f118c83f",
    "3f4e5105504ecdd8eac77278102f0cc5b34117f86202f9569537480392400d53",
    "66bf848a48c773b0c0094f11201e98498ef7fcf41189a6a1bc96d11711da5635",
    "499a997cf9cb66f17c9233cd71baed4aba630b26c022cac37f7af029bc2c854f",
    "44958ff9b496ab60b2c246ede3f0cb7444194d472843b8fe6defd37fff089df5",
);

/// GStreamer 1.22 `mulawenc ! rtppcmupay`, 160 samples: one 20 ms G.711 PCMU packet.
pub(crate) const GST_PCMU_20MS: &str = concat!(
    "800006d98fc81af12011c2b1a2441b0e0906060a101fd29c8e898686898f9eff",
    "1e0f090606090e1c529f908a8686898e9bc422110a0706080d193ba6928b8786",
    "888d98b529140b0706080c172fac958c8786878c95ac2f170c0806070b1429b5",
    "988d8886878b92a63b190d0806070a1122c49b8e8986868a909f521c0e090606",
    "090f1eff9e8f898686898e9cd21f100a0606090e1b44a2918a8786888d99bb26",
    "120b0706080d1835a9948b87",
);

/// ffmpeg native AAC, 16 kHz mono, MPEG4-GENERIC AAC-hbr (RFC 3640): one access unit.
pub(crate) const FFMPEG_AAC_16K: &str = concat!(
    "80e10fca0391287b4c24b692001003f800e430ad48436284cceb8afe2bffeb57",
    "fff9d78d5df8bbe6f9f3adfaf8a95aeee506a616a699ea79a79c3d25e73e75f5",
    "db6ba67ebdf2299858985898531c00519d43580150029e8c5dcc2ee76b992849",
    "50909b427bd584df745a09f8cdd95673693045622b18de141ce4a07887013313",
    "3114cd04e2d122ca62784168ac1470",
);

/// ffmpeg's first RTCP packet for the H.264 stream above: a lone SR, no report blocks.
pub(crate) const FFMPEG_RTCP_SR: &str = "80c80006462d20a3eeac55cb3020c49b5ad4535d0000000000000000";

/// GStreamer rtpbin sender: compound SR + SDES (CNAME, TOOL "GStreamer").
pub(crate) const GST_RTCP_SR_SDES: &str = concat!(
    "80c8000607122864eeac556d19bb384faf656c820000000a0000280081ca000c",
    "07122864011b7573657231363438353833373940686f73742d36373765626330",
    "3106094753747265616d657200000000",
);

/// GStreamer rtpbin receiver: compound RR (one report block) + SDES (CNAME, TOOL).
pub(crate) const GST_RTCP_RR_SDES: &str = concat!(
    "81c90007777bd0f82011c2b100ffffff000008330000000055bfea1f000049ec",
    "81ca000c777bd0f8011c757365723239303838373538323740686f73742d6563",
    "63653037646406094753747265616d6572000000",
);
