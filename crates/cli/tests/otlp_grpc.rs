//! OTLP/gRPC against a real `blackbox serve --otlp-grpc` with tonic's client: success, partial
//! success, gzip, and the status codes of refusals (docs/OTEL.md §1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_otel::map::kv;
use common::serve::{Server, token};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tonic::codec::CompressionEncoding;

/// A client codec that sends the given bytes as the message (whatever they hold) and reads the
/// answer's bytes.
#[derive(Debug, Clone, Copy)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn chat(id: u8) -> Span {
    let t = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap();
    Span {
        trace_id: vec![0x11; 16],
        span_id: vec![id; 8],
        name: "chat gpt-4o".into(),
        start_time_unix_nano: t,
        end_time_unix_nano: t + 2_000_000,
        attributes: vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.request.model", s("gpt-4o")),
            kv("gen_ai.agent.id", s("grpc-agent")),
        ],
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn with_token(
    req: ExportTraceServiceRequest,
    tok: Option<&str>,
) -> tonic::Request<ExportTraceServiceRequest> {
    let mut r = tonic::Request::new(req);
    if let Some(t) = tok {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

#[test]
fn otlp_grpc_exports_are_appended_and_refusals_have_the_specified_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    common::run(&["init", "--data-dir", d]);
    let tok = token(d, Some("acme"), "ingest");
    let read = token(d, Some("acme"), "read");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Server::start_with(d, |mut c| {
        c.args(["--otlp-grpc", &format!("127.0.0.1:{port}")]);
        c
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap()
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
        let ok = client
            .export(with_token(request(vec![chat(1), chat(2)]), Some(&tok)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.partial_success, None);

        let mut bad = chat(3);
        bad.start_time_unix_nano = 0;
        let partial = client
            .export(with_token(request(vec![chat(4), bad]), Some(&tok)))
            .await
            .unwrap()
            .into_inner()
            .partial_success
            .unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("start_time_unix_nano is 0"),
            "{}",
            partial.error_message
        );

        let e = client
            .export(with_token(request(vec![chat(5)]), None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        let e = client
            .export(with_token(request(vec![chat(6)]), Some(&read)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

        // Bad input is INVALID_ARGUMENT (not retryable), whatever stage finds it; nothing of it
        // is written.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let raw = tonic::client::Grpc::new(channel);
        let send = async |body: Vec<u8>, gzip: bool| {
            let mut raw = raw.clone();
            if gzip {
                raw = raw.send_compressed(CompressionEncoding::Gzip);
            }
            raw.ready().await.unwrap();
            let mut r = tonic::Request::new(body);
            r.metadata_mut()
                .insert("authorization", format!("Bearer {tok}").parse().unwrap());
            raw.unary(
                r,
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                    .parse()
                    .unwrap(),
                RawBytes,
            )
            .await
            .unwrap_err()
        };
        let malformed = send(vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01], false).await;
        assert_eq!(
            malformed.code(),
            tonic::Code::InvalidArgument,
            "{malformed:?}"
        );
        assert!(
            malformed
                .message()
                .contains("not a protobuf ExportTraceServiceRequest"),
            "{malformed:?}"
        );
        let mut many = request((0..10_001u32).map(|_| Span::default()).collect());
        many.resource_spans[0].schema_url = "x".into();
        let too_many = send(prost::Message::encode_to_vec(&many), false).await;
        assert_eq!(
            too_many.code(),
            tonic::Code::InvalidArgument,
            "{too_many:?}"
        );
        assert!(too_many.message().contains("10001 spans"), "{too_many:?}");
        let oversize = send(vec![0; (16 << 20) + 1], false).await;
        assert_eq!(
            oversize.code(),
            tonic::Code::InvalidArgument,
            "{oversize:?}"
        );
        assert!(
            oversize.message().contains("larger than 16777216 bytes"),
            "{oversize:?}"
        );
        let bomb = send(vec![0; (16 << 20) + 1], true).await;
        assert_eq!(bomb.code(), tonic::Code::InvalidArgument, "{bomb:?}");
        assert!(bomb.message().contains("inflates to more than"), "{bomb:?}");
    });
    // The client's connection closes with its runtime (the service would otherwise wait up to
    // 10 s for it at shutdown).
    drop(rt);
    server.stop();
    let r = common::run(&[
        "query",
        "--data-dir",
        d,
        "--event-type",
        "llm_request",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    for e in entries {
        assert_eq!(e["agent_id"], "grpc-agent");
        assert_eq!(e["origin"]["via"], "otlp");
    }
    let r = common::run(&["verify", "--data-dir", d]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
