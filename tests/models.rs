//! The tutorial's three models: parameter counts, tensor names, shapes of a full pass.
use dfdx::prelude::*;
use dfdx_flows::prelude::*;

#[test]
fn parameter_counts_match_the_tutorial() {
    let dev: Cpu = Default::default();
    assert_eq!(
        simple_flow::<f32, _>(&dev).unwrap().num_trainable_params(),
        556_312
    );
    assert_eq!(
        vardeq_flow::<f32, _>(&dev).unwrap().num_trainable_params(),
        628_388
    );
    assert_eq!(
        multiscale_flow::<f32, _>(&dev)
            .unwrap()
            .num_trainable_params(),
        1_711_818
    );
}
